//! `superres eval` and `superres downscale` end to end: the JSON schema, agreement with the numpy
//! reference numbers, models with and without self-ensemble, and clear errors for folders that do
//! not pair up.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use superres::io::image::{decode_file, Samples};

fn run(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_superres"));
    c.env_remove("SUPERRES_CPU");
    c.args(args).output().expect("run superres")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn q() -> PathBuf {
    fixtures().join("quality")
}

fn expected() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(q().join("expected.json")).unwrap()).unwrap()
}

/// `hr/` with the fixture inputs and `lr/` with their x`scale` BI downscales under the same names.
fn benchmark(root: &Path, scale: usize) -> (PathBuf, PathBuf) {
    let (hr, lr) = (root.join("hr"), root.join("lr"));
    std::fs::create_dir_all(&hr).unwrap();
    std::fs::create_dir_all(&lr).unwrap();
    for name in ["rgb_30x26", "gray_25x23"] {
        std::fs::copy(q().join("inputs").join(format!("{name}.png")), hr.join(format!("{name}.png")))
            .unwrap();
        std::fs::copy(
            q().join("expected").join(format!("{name}_bix{scale}.png")),
            lr.join(format!("{name}.png")),
        )
        .unwrap();
    }
    (hr, lr)
}

fn json_out(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn reference(sr: &str, crop: u64, channels: &str) -> (f64, f64) {
    let e = expected();
    let m = e["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["sr"] == sr && m["crop"] == crop && m["channels"] == channels)
        .unwrap_or_else(|| panic!("no reference for {sr} crop {crop} {channels}"))
        .clone();
    (m["psnr"].as_f64().unwrap(), m["ssim"].as_f64().unwrap())
}

#[test]
fn eval_bicubic_json_matches_the_numpy_reference() {
    let d = tempfile::tempdir().unwrap();
    for scale in [2u64, 3] {
        let (hr, lr) = benchmark(&d.path().join(format!("x{scale}")), scale as usize);
        let o = run(&["eval", "-m", "bicubic", "--lr", s(&lr), "--hr", s(&hr), "--json"]);
        let v = json_out(&o);
        assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
        // One object on one line, keys in the documented order.
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.starts_with("{\"mean\":{\"psnr\":") && text.trim_end().lines().count() == 1, "{text}");
        assert!(text.find("\"mean\"").unwrap() < text.find("\"images\"").unwrap());
        let images = v["images"].as_array().unwrap();
        let names: Vec<&str> = images.iter().map(|i| i["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["gray_25x23", "rgb_30x26"]);
        let mut sum = 0.0;
        for i in images {
            let (p, ss) =
                reference(&format!("{}_bix{scale}_up.png", i["name"].as_str().unwrap()), scale, "y");
            assert!((i["psnr"].as_f64().unwrap() - p).abs() < 1e-6, "{i}");
            assert!((i["ssim"].as_f64().unwrap() - ss).abs() < 1e-9, "{i}");
            assert_eq!(i.as_object().unwrap().len(), 3);
            sum += p;
        }
        assert!((v["mean"]["psnr"].as_f64().unwrap() - sum / 2.0).abs() < 1e-6);

        // Crop 0 and RGB mode.
        let v = json_out(&run(&[
            "eval",
            "-m",
            "bicubic",
            "--lr",
            s(&lr),
            "--hr",
            s(&hr),
            "--json",
            "--rgb",
            "--crop",
            "0",
        ]));
        let rgb = v["images"].as_array().unwrap().iter().find(|i| i["name"] == "rgb_30x26").unwrap().clone();
        let (p, ss) = reference(&format!("rgb_30x26_bix{scale}_up.png"), 0, "rgb");
        assert!(
            (rgb["psnr"].as_f64().unwrap() - p).abs() < 1e-6
                && (rgb["ssim"].as_f64().unwrap() - ss).abs() < 1e-9
        );

        // Saved SR images give the same numbers as the bicubic pseudo-model.
        let sr = d.path().join(format!("sr{scale}"));
        std::fs::create_dir_all(&sr).unwrap();
        for name in ["rgb_30x26", "gray_25x23"] {
            std::fs::copy(
                q().join("expected").join(format!("{name}_bix{scale}_up.png")),
                sr.join(format!("{name}.png")),
            )
            .unwrap();
        }
        let a = json_out(&run(&[
            "eval",
            "--sr",
            s(&sr),
            "--hr",
            s(&hr),
            "--scale",
            &scale.to_string(),
            "--json",
        ]));
        let b = json_out(&run(&["eval", "-m", "bicubic", "--lr", s(&lr), "--hr", s(&hr), "--json"]));
        assert_eq!(a, b);
    }
}

#[test]
fn eval_of_a_model_scores_what_upscale_writes() {
    let d = tempfile::tempdir().unwrap();
    let (hr, lr) = benchmark(d.path(), 2);
    let model = fixtures().join("models/srvgg_x2.pth");
    for tta in [false, true] {
        let sr = d.path().join(format!("sr_tta{tta}"));
        let mut up = vec!["upscale", "-m", s(&model), s(&lr), "-o", s(&sr), "-q"];
        let mut ev = vec!["eval", "-m", s(&model), "--lr", s(&lr), "--hr", s(&hr), "--json"];
        if tta {
            up.push("--tta");
            ev.push("--tta");
        }
        let o = run(&up);
        assert!(o.status.success(), "{}", err(&o));
        let direct = json_out(&run(&ev));
        let saved = json_out(&run(&["eval", "--sr", s(&sr), "--hr", s(&hr), "--scale", "2", "--json"]));
        assert_eq!(direct, saved, "tta={tta}");
    }
    let plain = json_out(&run(&["eval", "-m", s(&model), "--lr", s(&lr), "--hr", s(&hr), "--json"]));
    let four = json_out(&run(&[
        "eval",
        "-m",
        s(&model),
        "--lr",
        s(&lr),
        "--hr",
        s(&hr),
        "--json",
        "--tta",
        "--tta-transforms",
        "4",
    ]));
    assert_ne!(plain["mean"], four["mean"]);
    // The model's scale must match a given one.
    let o = run(&["eval", "-m", s(&model), "--lr", s(&lr), "--hr", s(&hr), "--scale", "3"]);
    assert_ne!(o.status.code(), Some(0));
}

#[test]
fn eval_text_output_has_rows_and_the_mean() {
    let d = tempfile::tempdir().unwrap();
    let (hr, lr) = benchmark(d.path(), 3);
    let o = run(&["eval", "-m", "bicubic", "--lr", s(&lr), "--hr", s(&hr)]);
    assert!(o.status.success(), "{}", err(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("gray_25x23") && text.contains("rgb_30x26") && text.contains("mean of 2 images"),
        "{text}"
    );
}

#[test]
fn eval_of_clips_averages_per_clip_then_over_clips() {
    let d = tempfile::tempdir().unwrap();
    let (hr, lr) = (d.path().join("hr"), d.path().join("lr"));
    // Clip a: one frame; clip b: two frames (the same image twice plus another).
    let frames = [("a", "1", "rgb_30x26"), ("b", "1", "rgb_30x26"), ("b", "2", "gray_25x23")];
    for (clip, f, name) in frames {
        std::fs::create_dir_all(hr.join(clip)).unwrap();
        std::fs::create_dir_all(lr.join(clip)).unwrap();
        std::fs::copy(q().join("inputs").join(format!("{name}.png")), hr.join(clip).join(format!("{f}.png")))
            .unwrap();
        std::fs::copy(
            q().join("expected").join(format!("{name}_bix2.png")),
            lr.join(clip).join(format!("{f}.png")),
        )
        .unwrap();
    }
    let v =
        json_out(&run(&["eval", "-m", "bicubic", "--lr", s(&lr), "--hr", s(&hr), "--crop", "0", "--json"]));
    let (prgb, _) = reference("rgb_30x26_bix2_up.png", 0, "y");
    let (pgray, _) = reference("gray_25x23_bix2_up.png", 0, "y");
    let clips = v["clips"].as_array().unwrap();
    assert_eq!(clips.len(), 2);
    assert_eq!(clips[1]["frames"], 2);
    let want = (prgb + (prgb + pgray) / 2.0) / 2.0;
    assert!((v["mean"]["psnr"].as_f64().unwrap() - want).abs() < 1e-6, "{v}");
    assert_eq!(v["images"].as_array().unwrap().len(), 3);
    assert_eq!(v["images"][2]["name"], "b/2");
}

#[test]
fn eval_folders_that_do_not_pair_up_are_errors_listing_the_offenders() {
    let d = tempfile::tempdir().unwrap();
    let (hr, lr) = benchmark(d.path(), 2);
    // Missing and extra files.
    std::fs::remove_file(lr.join("gray_25x23.png")).unwrap();
    std::fs::copy(lr.join("rgb_30x26.png"), lr.join("extra.png")).unwrap();
    let o = run(&["eval", "-m", "bicubic", "--lr", s(&lr), "--hr", s(&hr)]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("gray_25x23.png (HR) has no LR counterpart"), "{}", err(&o));
    assert!(err(&o).contains("extra.png (LR) has no HR counterpart"), "{}", err(&o));
    assert!(o.stdout.is_empty());

    // Sizes that do not match the scale: a x3 LR under x2.
    std::fs::remove_file(lr.join("extra.png")).unwrap();
    std::fs::copy(q().join("expected/gray_25x23_bix3.png"), lr.join("gray_25x23.png")).unwrap();
    let o = run(&["eval", "-m", "bicubic", "--lr", s(&lr), "--hr", s(&hr), "--scale", "2"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("gray_25x23: LR 8x7 (x2 = 16x14), HR 25x23"), "{}", err(&o));
    assert!(!err(&o).contains("rgb_30x26:"), "{}", err(&o));

    // Empty folders are errors, not NaN.
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for args in [["--lr", s(&empty), "--hr", s(&hr)], ["--lr", s(&lr), "--hr", s(&empty)]] {
        let mut a = vec!["eval", "-m", "bicubic", "--json"];
        a.extend(args);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(3), "{}", err(&o));
        assert!(err(&o).contains("has no images"), "{}", err(&o));
        assert!(o.stdout.is_empty());
    }

    // Usage errors.
    for args in [
        vec!["eval", "--lr", s(&lr), "--hr", s(&hr)],
        vec!["eval", "--sr", s(&lr), "--hr", s(&hr)],
        vec!["eval", "-m", "bicubic", "--tta", "--lr", s(&lr), "--hr", s(&hr)],
        vec!["eval", "-m", "bicubic", "--sr", s(&lr), "--hr", s(&hr), "--scale", "2"],
        vec!["eval", "-m", "bicubic", "--lr", s(&lr), "--hr", s(&hr), "--tta-transforms", "4"],
        vec!["eval", "-m", "bicubic", "--lr", s(&lr)],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
    }
}

#[test]
fn downscale_writes_the_oracle_images() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let e = expected();
    for case in e["downscale"].as_array().unwrap() {
        let scale = case["scale"].as_u64().unwrap().to_string();
        let kernel = case["kernel"].as_str().unwrap();
        let input = q().join("inputs").join(case["input"].as_str().unwrap());
        let dst = out.join(format!("{kernel}{scale}_{}", case["input"].as_str().unwrap()));
        let o = run(&["downscale", s(&input), "-o", s(&dst), "--scale", &scale, "--kernel", kernel]);
        assert!(o.status.success(), "{}", err(&o));
        let got = decode_file(&dst, &Default::default()).unwrap();
        let want =
            decode_file(&q().join("expected").join(case["output"].as_str().unwrap()), &Default::default())
                .unwrap();
        assert_eq!((got.width, got.height, got.channels), (want.width, want.height, want.channels));
        assert!(got.samples == want.samples, "{case}");
        if case["input"] == "graya16_19x14.png" {
            assert!(matches!(got.samples, Samples::U16(_)), "16-bit stays 16-bit");
        }
    }
    // A directory, mirrored.
    let o = run(&["downscale", s(&q().join("inputs")), "-o", s(&d.path().join("dir")), "-s", "2", "-q"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_dir(d.path().join("dir")).unwrap().count(), 3);
}

#[test]
fn downscale_errors() {
    let d = tempfile::tempdir().unwrap();
    let input = q().join("inputs/rgb_30x26.png");
    let dst = d.path().join("o.png");
    let o = run(&["downscale", s(&input), "-o", s(&dst), "--scale", "3", "--kernel", "bd"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("--kernel bd"), "{}", err(&o));
    let o = run(&["downscale", s(&input), "-o", s(&dst), "--scale", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["downscale", s(&input), "-o", s(&dst), "--scale", "40"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("smaller than the scale"), "{}", err(&o));
    assert!(!dst.exists());
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none(), "no partial or temporary file");
}
