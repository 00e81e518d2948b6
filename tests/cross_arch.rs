//! Results that must be the same bytes on every architecture, checked against hashes computed on
//! x86-64: `tools/arm-test.sh` runs this file on aarch64 under qemu, so a mismatch there means the
//! ARM build computes something different from the x86 one.
//!
//! - Data movement and integer work (tiling, pixel shuffle inside a network, sample conversion,
//!   PNG/BMP/TIFF/WebP encoding and decoding, bicubic alpha) is bit-exact everywhere.
//! - The network kernels of the FMA levels (AVX2, AVX-512, NEON) also agree bit for bit: every
//!   output accumulates its K terms in the same order with one fused multiply-add each, and the
//!   epilogue runs the same operations. The portable level on x86 uses separate multiplies and
//!   adds (`wide` without FMA), so it only agrees within tolerance and is not hashed. Should a
//!   level ever change its summation order, its network hashes become a tolerance check instead
//!   (`model_parity.rs` already checks every level against PyTorch within 1e-4).
//!
//! To refresh after an intended change: `PRINT_HASHES=1 cargo test --test cross_arch -- --nocapture`.

mod common;

use common::*;
use superres::io::image::{decode_bytes, encode_to_writer, DecodeLimits, EncodeOptions, ImageView};
use superres::io::image::{OutFormat, Samples, SamplesRef};
use superres::models::Model;
use superres::pipeline::tile::tiles;
use superres::pipeline::{AlphaMode, UpscaleOptions, Upscaler};
use superres::CpuLevel;

/// FNV-1a, 64 bit: enough to tell outputs apart, and needs no dependency.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn samples_bytes(s: &Samples) -> Vec<u8> {
    match s {
        Samples::U8(v) => v.clone(),
        Samples::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Compare named hashes with the expected table, reporting every mismatch at once.
fn check(got: &[(&str, u64)], want: &[(&str, u64)]) {
    if std::env::var_os("PRINT_HASHES").is_some() {
        for (name, h) in got {
            println!("        (\"{name}\", {h:#018x}),");
        }
    }
    let mut bad = Vec::new();
    for (name, h) in got {
        match want.iter().find(|(n, _)| n == name) {
            Some((_, w)) if w == h => {}
            Some((_, w)) => bad.push(format!("{name}: got {h:#018x}, x86-64 gives {w:#018x}")),
            None => bad.push(format!("{name}: no expected hash")),
        }
    }
    assert!(bad.is_empty(), "on {}: {}", std::env::consts::ARCH, bad.join("; "));
}

#[test]
fn tiles_and_image_codecs_are_bit_exact() {
    let mut got = Vec::new();
    let mut t = Vec::new();
    for (h, w, tile, pad) in [(1080, 1920, 256, 18), (29, 37, 7, 5), (1, 1, 0, 3), (100, 3, 16, 40)] {
        for r in tiles(h, w, tile, pad) {
            for v in [r.y0, r.y1, r.x0, r.x1, r.py0, r.py1, r.px0, r.px1] {
                t.extend((v as u64).to_le_bytes());
            }
        }
    }
    got.push(("tiles", fnv(&t)));

    let (w, h) = (23u32, 9u32);
    let n8: Vec<u8> = noise_u16((w * h * 4) as usize, 7).iter().map(|v| (v >> 8) as u8).collect();
    let n16 = noise_u16((w * h * 4) as usize, 8);
    let cases: [(&str, OutFormat, u8, SamplesRef); 8] = [
        ("png_rgb8", OutFormat::Png, 3, SamplesRef::U8(&n8[..(w * h * 3) as usize])),
        ("png_rgba16", OutFormat::Png, 4, SamplesRef::U16(&n16)),
        ("png_gray16", OutFormat::Png, 1, SamplesRef::U16(&n16[..(w * h) as usize])),
        ("bmp_rgba8", OutFormat::Bmp, 4, SamplesRef::U8(&n8)),
        ("tiff_rgb16", OutFormat::Tiff, 3, SamplesRef::U16(&n16[..(w * h * 3) as usize])),
        ("webp_rgba8", OutFormat::Webp, 4, SamplesRef::U8(&n8)),
        ("webp_rgb8", OutFormat::Webp, 3, SamplesRef::U8(&n8[..(w * h * 3) as usize])),
        ("jpeg_rgb8", OutFormat::Jpeg, 3, SamplesRef::U8(&n8[..(w * h * 3) as usize])),
    ];
    for (name, format, channels, samples) in cases {
        let img = ImageView { width: w, height: h, channels, samples };
        let mut bytes = Vec::new();
        encode_to_writer(&mut bytes, &img, &EncodeOptions::new(format)).unwrap();
        got.push((name, fnv(&bytes)));
        let back = decode_bytes(&bytes, name.as_ref(), &DecodeLimits::default()).unwrap();
        if format != OutFormat::Jpeg {
            assert!(back.samples.as_ref() == samples, "{name}: lossless round trip changed the pixels");
        }
        got.push((format!("{name}_decoded").leak(), fnv(&samples_bytes(&back.samples))));
    }
    let sample = std::fs::read(repo().join("assets/sample.png")).unwrap();
    let decoded = decode_bytes(&sample, "sample.png".as_ref(), &DecodeLimits::default()).unwrap();
    got.push(("sample_png_decoded", fnv(&samples_bytes(&decoded.samples))));

    check(&got, EXPECTED_IO);
}

#[test]
fn network_outputs_match_x86_at_fma_levels() {
    let level = CpuLevel::effective();
    if !matches!(level, CpuLevel::Avx2 | CpuLevel::Avx512 | CpuLevel::Neon) {
        eprintln!("SKIP network hashes: level {level} has no FMA kernels (portable outputs differ in the last bits)");
        return;
    }
    eprintln!("network hashes at level {level}");
    let model = |name: &str| Model::open(&fixtures().join("models").join(name)).unwrap();
    let (w, h) = (21u32, 13u32);
    let rgba16 = noise_u16((w * h * 4) as usize, 11);
    let rgb8: Vec<u8> = noise_u16((w * h * 3) as usize, 12).iter().map(|v| (v >> 8) as u8).collect();
    let img16 = ImageView { width: w, height: h, channels: 4, samples: SamplesRef::U16(&rgba16) };
    let img8 = ImageView { width: w, height: h, channels: 3, samples: SamplesRef::U8(&rgb8) };
    let mut got = Vec::new();
    let runs: [(&str, &str, Option<usize>, &ImageView, UpscaleOptions); 5] = [
        ("srvgg_x4_prelu_rgb8", "srvgg_x4.pth", None, &img8, UpscaleOptions::default()),
        (
            "srvgg_x2_rgba16_tiled_alpha_model",
            "srvgg_x2.pth",
            None,
            &img16,
            UpscaleOptions { tile: 8, alpha: AlphaMode::Model, ..UpscaleOptions::default() },
        ),
        (
            "srvgg_x4_lrelu_rgba16_bicubic_alpha",
            "srvgg_x4_lrelu.pth",
            None,
            &img16,
            UpscaleOptions::default(),
        ),
        (
            "edsr_x3_rgb8_tiled",
            "edsr_basicsr_x3.pth",
            None,
            &img8,
            UpscaleOptions { tile: 7, ..UpscaleOptions::default() },
        ),
        (
            "mdsr_x2_rgb8_depth16",
            "mdsr.pt",
            Some(2),
            &img8,
            UpscaleOptions { depth: Some(16), ..UpscaleOptions::default() },
        ),
    ];
    for (name, file, scale, img, opts) in runs {
        let net = model(file).build(level, scale).unwrap();
        let out = Upscaler::new(net, opts).upscale(img).unwrap();
        got.push((name, fnv(&samples_bytes(&out.samples))));
    }
    check(&got, EXPECTED_NET);
}

const EXPECTED_IO: &[(&str, u64)] = &[
    ("tiles", 0x883b3ca6ee7f8eb3),
    ("png_rgb8", 0x6778e1fd5e74b744),
    ("png_rgb8_decoded", 0xb2f1c96a2ceb7836),
    ("png_rgba16", 0xfcc3df7319d139fc),
    ("png_rgba16_decoded", 0xed6b1ba8626de956),
    ("png_gray16", 0x7630353ea93c7ebd),
    ("png_gray16_decoded", 0x4e42d718b7ca5ccc),
    ("bmp_rgba8", 0x4f8294bb2f46281b),
    ("bmp_rgba8_decoded", 0xf244e629ea5de8f2),
    ("tiff_rgb16", 0xe683b3530156b84d),
    ("tiff_rgb16_decoded", 0x90d5e817b91b85de),
    ("webp_rgba8", 0x0f7317911b086e41),
    ("webp_rgba8_decoded", 0xf244e629ea5de8f2),
    ("webp_rgb8", 0x290eb699a7f88460),
    ("webp_rgb8_decoded", 0xb2f1c96a2ceb7836),
    ("jpeg_rgb8", 0xff6f8cfb5ea708ae),
    ("jpeg_rgb8_decoded", 0x9c7cd4ed0fd2e879),
    ("sample_png_decoded", 0x579be0b195008ec4),
];

const EXPECTED_NET: &[(&str, u64)] = &[
    ("srvgg_x4_prelu_rgb8", 0x0238ecd9f1563541),
    ("srvgg_x2_rgba16_tiled_alpha_model", 0x894af960c4d161e7),
    ("srvgg_x4_lrelu_rgba16_bicubic_alpha", 0x870ff9ab157a2c87),
    ("edsr_x3_rgb8_tiled", 0x925cd65df65ee989),
    ("mdsr_x2_rgb8_depth16", 0x885f80d56a0d4b97),
];
