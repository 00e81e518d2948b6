//! The shipped real model against PyTorch on a real photo, and against the original checkpoint.
//! These need developer-only material and skip with a message without it:
//! - `../shared` (the original Real-ESRGAN checkpoint),
//! - `target/parity/realesr-animevideov3_set14_crop.safetensors`, written by
//!   `tools/parity_real.py` (PyTorch on a Set14 crop).

mod common;

use common::*;
use superres::graph::Arena;
use superres::models::Model;
use superres::weights::safetensors::SafeTensors;
use superres::CpuLevel;

fn shipped() -> Model {
    Model::open(&repo().join("weights/realesr-animevideov3.safetensors")).unwrap()
}

/// PSNR of `a` against `b` with peak 1.
fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (1.0 / mse).log10()
}

#[test]
fn shipped_model_matches_pytorch_on_a_real_photo() {
    let path = repo().join("target/parity/realesr-animevideov3_set14_crop.safetensors");
    if !path.exists() {
        eprintln!("SKIP: {} is absent (run tools/parity_real.py with PyTorch to create it)", path.display());
        return;
    }
    let st = SafeTensors::open(&path).unwrap();
    let (x, h, w, _) = nchw_to_hwc(&st, "input");
    let (want, _, _, _) = nchw_to_hwc(&st, "output");
    let model = shipped();
    for level in CpuLevel::supported() {
        let got = model.build(level, None).unwrap().run_hwc(&x, h, w, &mut Arena::new()).unwrap();
        let p = psnr(&got, &want);
        let err = max_abs_diff(&got, &want);
        eprintln!("realesr-animevideov3 {level}: PSNR {p:.1} dB vs PyTorch, max abs error {err:.2e}");
        assert!(p >= 60.0, "{level}: PSNR {p} dB < 60");
        assert!(err <= 1e-4, "{level}: max abs error {err}");
    }
}

#[test]
fn shipped_model_equals_the_original_checkpoint() {
    let Some(shared) = shared("original Real-ESRGAN checkpoint") else { return };
    let original = Model::open(&shared.join("weights/realesrgan/realesr-animevideov3.pth")).unwrap();
    let (h, w) = (21, 17);
    let x: Vec<f32> = (0..h * w * 3).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
    let level = CpuLevel::effective();
    let a = original.build(level, None).unwrap().run_hwc(&x, h, w, &mut Arena::new()).unwrap();
    let b = shipped().build(level, None).unwrap().run_hwc(&x, h, w, &mut Arena::new()).unwrap();
    assert!(a == b, "the converted model must compute exactly what the checkpoint does");
}
