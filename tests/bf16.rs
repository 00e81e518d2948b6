//! `--precision bf16` on the shipped models (where the CPU has AMX-BF16; skipped elsewhere): the
//! output stays within 45 dB PSNR of fp32, and tiles and streamed stripes give the whole image's
//! bits (bf16 layers are direct sums, the same for every pixel position).

mod common;

use common::*;
use superres::io::image::{decode_file, DecodeLimits, ImageView, Samples, SamplesRef};
use superres::models::{ConvAlgo, Model, OpenOptions};
use superres::pipeline::{Staging, UpscaleOptions, Upscaler};
use superres::CpuLevel;

fn run(model: &Model, img: &ImageView, opts: UpscaleOptions) -> Vec<u16> {
    let net = model.build(CpuLevel::effective(), None).unwrap();
    match Upscaler::new(net, opts).upscale(img).unwrap().samples {
        Samples::U16(v) => v,
        Samples::U8(_) => panic!("16-bit output expected"),
    }
}

fn psnr(a: &[u16], b: &[u16]) -> f64 {
    let mse = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (65535f64 * 65535.0 / mse.max(1e-12)).log10()
}

#[test]
fn bf16_is_close_to_fp32_and_tiles_exactly() {
    if !superres::kernels::bf16::amx_available(CpuLevel::effective()) {
        eprintln!("skipped: no AMX-BF16 on this CPU (or SUPERRES_CPU below avx512): bf16 runs fp32 here");
        return;
    }
    let photo = decode_file(&repo().join("assets/sample.png"), &DecodeLimits::default()).unwrap();
    let v = photo.view();
    let SamplesRef::U8(px8) = v.samples else { panic!("8-bit sample expected") };
    // 16-bit samples keep the output's rounding far below the differences measured.
    let px: Vec<u16> = px8.iter().map(|&p| p as u16 * 257).collect();
    let img = ImageView { samples: SamplesRef::U16(&px), ..v };
    for name in ["realesr-animevideov3", "realesrgan-x4plus"] {
        let mut m =
            Model::open_with(&repo().join(format!("weights/{name}.safetensors")), &OpenOptions::default())
                .unwrap();
        let whole = UpscaleOptions { staging: Staging::Off, ..UpscaleOptions::default() };
        m.set_conv_algo(ConvAlgo::Auto);
        let fp32 = run(&m, &img, whole.clone());
        m.set_conv_algo(ConvAlgo::Bf16);
        let bf16 = run(&m, &img, whole.clone());
        let p = psnr(&bf16, &fp32);
        eprintln!("{name}: PSNR of bf16 against fp32 {p:.2} dB");
        assert!((45.0..100.0).contains(&p), "{name}: PSNR {p:.2} dB");
        let tiled = run(&m, &img, UpscaleOptions { tile: 48, ..whole.clone() });
        assert!(tiled == bf16, "{name}: 48-pixel tiles differ from the whole image");
        let streamed =
            run(&m, &img, UpscaleOptions { staging: Staging::Stream, ..UpscaleOptions::default() });
        assert!(streamed == bf16, "{name}: streamed stripes differ from the whole image");
    }
}
