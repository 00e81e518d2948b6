//! The benchmark tools against their references: the MATLAB-exact resizer and the BD degradation
//! reproduce the numpy oracles (committed fixtures) and the official LR files (../shared); PSNR
//! and SSIM agree with the numpy reference to 1e-6 dB and reproduce the published bicubic
//! baselines.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use superres::io::image::{decode_file, DecodedImage, Samples};
use superres::kernels::{degrade, imresize};
use superres::metrics::eval::{evaluate, EvalOptions, Kind, Method};
use superres::metrics::{score, Channels};

fn load(p: &Path) -> DecodedImage {
    decode_file(p, &Default::default()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn quality_fixtures() -> PathBuf {
    fixtures().join("quality")
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn same_pixels(a: &DecodedImage, w: u32, h: u32, c: u8, s: &Samples) -> bool {
    (a.width, a.height, a.channels) == (w, h, c) && &a.samples == s
}

#[test]
fn downscale_matches_the_numpy_oracle_on_fixtures() {
    let exp = json(&quality_fixtures().join("expected.json"));
    let cases = exp["downscale"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let input = load(&quality_fixtures().join("inputs").join(case["input"].as_str().unwrap()));
        let want = load(&quality_fixtures().join("expected").join(case["output"].as_str().unwrap()));
        let s = case["scale"].as_u64().unwrap() as usize;
        let hr = imresize::modcrop(&input.view(), s).unwrap();
        let got = match case["kernel"].as_str().unwrap() {
            "bicubic" => imresize::imresize(&hr.view(), 1.0 / s as f64).unwrap(),
            "bd" => degrade::bd_downscale(&hr.view(), s).unwrap(),
            k => panic!("unknown kernel {k}"),
        };
        assert!(
            same_pixels(&want, got.width, got.height, got.channels, &got.samples),
            "{} {} x{s}: differs from the oracle",
            case["input"],
            case["kernel"]
        );
    }
}

#[test]
fn bicubic_upscale_and_metrics_match_the_numpy_references_on_fixtures() {
    let exp = json(&quality_fixtures().join("expected.json"));
    let cases = exp["metrics"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let s = case["scale"].as_u64().unwrap() as usize;
        let up_name = case["sr"].as_str().unwrap();
        let lr_name = up_name.replace("_up", "");
        let lr = load(&quality_fixtures().join("expected").join(&lr_name));
        let want_up = load(&quality_fixtures().join("expected").join(up_name));
        let up = imresize::imresize(&lr.view(), s as f64).unwrap();
        assert!(same_pixels(&want_up, up.width, up.height, up.channels, &up.samples), "{up_name}");
        let hr = load(&quality_fixtures().join("inputs").join(case["hr"].as_str().unwrap()));
        let hr = imresize::modcrop(&hr.view(), s).unwrap();
        let crop = case["crop"].as_u64().unwrap() as usize;
        let ch = if case["channels"] == "rgb" { Channels::Rgb } else { Channels::Y };
        let got = score(&up.view(), &hr.view(), crop, ch).unwrap();
        let (wp, ws) = (case["psnr"].as_f64().unwrap(), case["ssim"].as_f64().unwrap());
        assert!((got.psnr - wp).abs() < 1e-6, "{up_name} crop {crop} {ch:?}: PSNR {} vs {wp}", got.psnr);
        assert!((got.ssim - ws).abs() < 1e-9, "{up_name} crop {crop} {ch:?}: SSIM {} vs {ws}", got.ssim);
    }
}

/// Every official LR file in ../shared (Set5/Set14/Urban100 x2/x3/x4) and the Vid4 BIx4 frames
/// that have ground truth, made again from the HR images and compared sample by sample.
#[test]
fn downscale_reproduces_the_official_lr_files_bit_exactly() {
    let Some(shared) = shared("official LR files") else { return };
    let data = shared.join("data");
    let mut cases: Vec<(PathBuf, PathBuf, usize)> = Vec::new();
    for set in ["Set5", "Set14", "Urban100"] {
        for s in [2, 3, 4] {
            let dir = data.join(format!("sisr/{set}/LRbicx{s}"));
            for lr in superres::pipeline::batch::walk(&dir).unwrap_or_default() {
                let hr = data.join(format!("sisr/{set}/HR")).join(lr.file_name().unwrap());
                cases.push((hr, lr, s));
            }
        }
    }
    for clip in ["calendar", "walk"] {
        let dir = data.join("vsr/Vid4/BIx4").join(clip);
        for lr in superres::pipeline::batch::walk(&dir).unwrap_or_default() {
            cases.push((data.join("vsr/Vid4/GT").join(clip).join(lr.file_name().unwrap()), lr, 4));
        }
    }
    assert!(!cases.is_empty(), "no LR files under {}", data.display());
    let mut bad = Vec::new();
    for (hr, lr, s) in &cases {
        let h = load(hr);
        let want = load(lr);
        let got =
            imresize::imresize(&imresize::modcrop(&h.view(), *s).unwrap().view(), 1.0 / *s as f64).unwrap();
        if !same_pixels(&want, got.width, got.height, got.channels, &got.samples) {
            bad.push(lr.display().to_string());
        }
    }
    eprintln!(
        "downscale: {}/{} official LR files reproduced bit-exactly",
        cases.len() - bad.len(),
        cases.len()
    );
    assert!(bad.is_empty(), "differ: {bad:?}");
}

fn bicubic_eval(lr: &Path, hr: &Path, crop: Option<usize>) -> superres::metrics::eval::Report {
    let opts = EvalOptions { crop, ..EvalOptions::default() };
    evaluate(lr, hr, Method::Bicubic, &opts, &mut |_| {}).unwrap()
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

/// Our eval of the bicubic baseline against per-image numbers from `../shared/tools/metrics.py`
/// (committed in `shared_reference.json` by tools/make_quality_fixtures.py), and the published
/// means.
#[test]
fn eval_agrees_with_the_numpy_reference_and_reproduces_published_baselines() {
    let Some(shared) = shared("bicubic baselines") else { return };
    let data = shared.join("data");
    let reference = json(&quality_fixtures().join("shared_reference.json"));
    let reference = reference.as_array().unwrap();
    let mut compared = 0;
    let mut worst = 0.0f64;
    for set in ["Set5", "Set14", "Urban100"] {
        for s in [2u64, 3, 4] {
            let lr = data.join(format!("sisr/{set}/LRbicx{s}"));
            let r = bicubic_eval(&lr, &data.join(format!("sisr/{set}/HR")), None);
            assert_eq!((r.kind, r.scale, r.crop), (Kind::Images, s as usize, s as usize));
            for img in &r.images {
                let want = reference
                    .iter()
                    .find(|x| x["set"] == set && x["scale"] == s && x["name"] == img.name.as_str())
                    .unwrap_or_else(|| panic!("no reference for {set} x{s} {}", img.name));
                let dp = (img.score.psnr - want["psnr"].as_f64().unwrap()).abs();
                let ds = (img.score.ssim - want["ssim"].as_f64().unwrap()).abs();
                assert!(dp < 1e-6 && ds < 1e-9, "{set} x{s} {}: {dp} dB, {ds} SSIM off", img.name);
                worst = worst.max(dp);
                compared += 1;
            }
            if (set, s) == ("Set5", 4) {
                assert_eq!((round(r.mean.psnr, 2), round(r.mean.ssim, 4)), (28.43, 0.8111));
            }
            if (set, s) == ("Set14", 4) {
                assert_eq!((round(r.mean.psnr, 2), round(r.mean.ssim, 4)), (26.00, 0.7029));
            }
        }
    }
    // Vid4 as a folder of clips, at crop 0 (the LR folder also holds clips without ground
    // truth, so pair a copy of the two that have it).
    let tmp = tempfile::tempdir().unwrap();
    for clip in ["calendar", "walk"] {
        let src = data.join("vsr/Vid4/BIx4").join(clip);
        std::fs::create_dir_all(tmp.path().join(clip)).unwrap();
        for f in superres::pipeline::batch::walk(&src).unwrap() {
            std::fs::copy(&f, tmp.path().join(clip).join(f.file_name().unwrap())).unwrap();
        }
    }
    let r = bicubic_eval(tmp.path(), &data.join("vsr/Vid4/GT"), Some(0));
    assert_eq!((r.kind, r.images.len(), r.clips.len()), (Kind::Clips, 88, 2));
    for img in &r.images {
        let want = reference.iter().find(|x| x["set"] == "Vid4" && x["name"] == img.name.as_str()).unwrap();
        let dp = (img.score.psnr - want["psnr"].as_f64().unwrap()).abs();
        assert!(dp < 1e-6 && (img.score.ssim - want["ssim"].as_f64().unwrap()).abs() < 1e-9, "{}", img.name);
        worst = worst.max(dp);
        compared += 1;
    }
    let clip = |n: &str| r.clips.iter().find(|c| c.name == n).unwrap();
    assert_eq!((clip("calendar").frames, clip("walk").frames), (41, 47));
    assert_eq!(
        (round(clip("calendar").score.psnr, 2), round(clip("calendar").score.ssim, 4)),
        (20.38, 0.5721)
    );
    assert_eq!((round(clip("walk").score.psnr, 2), round(clip("walk").score.ssim, 4)), (26.10, 0.7973));
    let mean_of_clips = (clip("calendar").score.psnr + clip("walk").score.psnr) / 2.0;
    assert!((r.mean.psnr - mean_of_clips).abs() < 1e-12, "the mean is over clips, not frames");
    eprintln!("eval: {compared} images within 1e-6 dB of metrics.py (worst {worst:.2e} dB)");
}
