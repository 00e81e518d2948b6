//! The shipped real models against their references on real photos, and against the original
//! files they were converted from. These need developer-only material and skip with a message
//! without it:
//! - `target/parity/<model>_crop.safetensors`, written by `tools/parity_real.py` (PyTorch, or numpy
//!   for the Keras models, loading the very weights we ship, on a crop of a Set14 image);
//! - `../shared` (the original checkpoints and ncnn files).

mod common;

use common::*;
use std::path::Path;
use superres::graph::Arena;
use superres::models::{ConvAlgo, Model};
use superres::weights::safetensors::SafeTensors;
use superres::CpuLevel;

fn shipped(name: &str) -> Model {
    Model::open(&repo().join(format!("weights/{name}.safetensors"))).unwrap()
}

/// PSNR of `a` against `b` with peak 1.
fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (1.0 / mse).log10()
}

/// Run `model` on the reference's input on every level and require PSNR >= 60 dB.
fn check_against_reference(name: &str, mut model: Model) {
    let path = repo().join(format!("target/parity/{name}_crop.safetensors"));
    if !path.exists() {
        eprintln!("SKIP {name}: {} is absent (run tools/parity_real.py to create it)", path.display());
        return;
    }
    let st = SafeTensors::open(&path).unwrap();
    let (x, h, w, _) = nchw_to_hwc(&st, "input");
    let (want, _, _, _) = nchw_to_hwc(&st, "output");
    for algo in [ConvAlgo::Direct, ConvAlgo::Auto] {
        model.set_conv_algo(algo);
        for level in CpuLevel::supported() {
            let got = model.build(level, None).unwrap().run_hwc(&x, h, w, &mut Arena::new()).unwrap();
            let p = psnr(&got, &want);
            let err = max_abs_diff(&got, &want);
            eprintln!(
                "{name} {level} {algo}: {w}x{h} crop, PSNR {p:.1} dB vs reference, max abs error {err:.2e}"
            );
            assert!(p >= 60.0, "{name} at {level} ({algo}): PSNR {p} dB < 60");
            assert!(err <= 1e-4, "{name} at {level} ({algo}): max abs error {err} > 1e-4");
        }
    }
}

#[test]
fn shipped_models_match_their_references_on_real_photos() {
    for name in [
        "realesr-animevideov3",
        "realesrgan-x4plus",
        "waifu2x-upconv7-anime",
        "waifu2x-upconv7-anime-noise2",
        "waifu2x-upconv7-photo",
        "waifu2x-cunet",
        "idealo-rdn-x2",
    ] {
        check_against_reference(name, shipped(name));
    }
}

#[test]
fn idealo_rrdn_from_tfjs_matches_keras_semantics() {
    // Not shipped (size): tools/parity_real.py writes the converted state dict next to its
    // reference; it is detected from its tensor names like any foreign safetensors file.
    let path = repo().join("target/parity/idealo-rrdn-x4.raw.safetensors");
    if !path.exists() {
        eprintln!("SKIP idealo-rrdn-x4: {} is absent (run tools/parity_real.py)", path.display());
        return;
    }
    let m = Model::open(&path).unwrap();
    assert_eq!(m.arch().name(), "rrdn");
    check_against_reference("idealo-rrdn-x4", m);
}

/// A deterministic test pattern in [0,1].
fn pattern(h: usize, w: usize) -> Vec<f32> {
    (0..h * w * 3).map(|i| ((i * 37) % 101) as f32 / 100.0).collect()
}

fn run(m: &Model, x: &[f32], h: usize, w: usize) -> Vec<f32> {
    m.build(CpuLevel::effective(), None).unwrap().run_hwc(x, h, w, &mut Arena::new()).unwrap()
}

#[test]
fn shipped_models_equal_the_files_they_were_converted_from() {
    let Some(shared) = shared("original checkpoints") else { return };
    let w = shared.join("weights");
    let pairs: &[(&str, &str)] = &[
        ("realesr-animevideov3", "realesrgan/realesr-animevideov3.pth"),
        ("realesrgan-x4plus", "realesrgan/realesrgan-x4plus.param"),
        ("waifu2x-upconv7-anime", "waifu2x/upconv_7_anime_style_art_rgb/scale2.0x_model.param"),
        ("waifu2x-upconv7-anime-noise0", "waifu2x/upconv_7_anime_style_art_rgb/noise0_scale2.0x_model.param"),
        ("waifu2x-upconv7-anime-noise1", "waifu2x/upconv_7_anime_style_art_rgb/noise1_scale2.0x_model.param"),
        ("waifu2x-upconv7-anime-noise2", "waifu2x/upconv_7_anime_style_art_rgb/noise2_scale2.0x_model.param"),
        ("waifu2x-upconv7-anime-noise3", "waifu2x/upconv_7_anime_style_art_rgb/noise3_scale2.0x_model.param"),
        ("waifu2x-upconv7-photo", "waifu2x/upconv_7_photo/scale2.0x_model.param"),
        ("waifu2x-cunet", "waifu2x/cunet/scale2.0x_model.param"),
    ];
    let (h, w_) = (21, 17);
    let x = pattern(h, w_);
    for (name, original) in pairs {
        let a = run(&Model::open(&w.join(original)).unwrap(), &x, h, w_);
        let b = run(&shipped(name), &x, h, w_);
        assert!(a == b, "{name}: the shipped model must compute exactly what {original} does");
    }
}

#[test]
fn ncnn_fp16_animevideov3_agrees_with_the_pth() {
    let Some(shared) = shared("realesr-animevideov3 .pth and ncnn files") else { return };
    let dir = shared.join("weights/realesrgan");
    let pth = Model::open(&dir.join("realesr-animevideov3.pth")).unwrap();
    let ncnn = Model::open(&dir.join("realesr-animevideov3-x4.param")).unwrap();
    let img = image_crop(&shared, "Set14/HR/baboon.png", 100, 120, 64);
    let Some((x, h, w)) = img else { return };
    let a = run(&pth, &x, h, w);
    let b = run(&ncnn, &x, h, w);
    let p = psnr(&b, &a);
    eprintln!("realesr-animevideov3: ncnn fp16 vs .pth fp32 on a 64x64 baboon crop: PSNR {p:.1} dB");
    assert!(p >= 45.0, "PSNR {p} dB < 45");
}

/// A `size x size` crop of a ../shared/data/sisr image as dense HWC in [0,1].
fn image_crop(
    shared: &Path,
    rel: &str,
    top: usize,
    left: usize,
    size: usize,
) -> Option<(Vec<f32>, usize, usize)> {
    let path = shared.join("data/sisr").join(rel);
    let img = superres::io::image::decode_file(&path, &Default::default()).ok()?;
    let superres::io::image::Samples::U8(px) = &img.samples else { return None };
    let (w, c) = (img.width as usize, img.channels as usize);
    let mut out = Vec::with_capacity(size * size * 3);
    for y in top..top + size {
        for x in left..left + size {
            for k in 0..3 {
                out.push(px[(y * w + x) * c + k] as f32 / 255.0);
            }
        }
    }
    Some((out, size, size))
}
