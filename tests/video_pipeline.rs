//! The streaming video pipeline and `superres video`: streamed output equals per-window
//! computation with bounded memory, 16-bit frame directories match PyTorch, Y4M streams keep their
//! tags and frame counts, bad streams fail cleanly, and a real ffmpeg pipe works.

mod common;

use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use superres::io::color::{Siting, Subsampling, YuvFrame};
use superres::io::image::{
    decode_file, write_image_atomic, DecodeLimits, EncodeOptions, ImageView, OutFormat, Samples, SamplesRef,
};
use superres::io::y4m::{Y4mHeader, Y4mReader, Y4mWriter};
use superres::models::Model;
use superres::pipeline::video::{RgbFrame, VideoStream};
use superres::weights::safetensors::SafeTensors;
use superres::CpuLevel;

fn video_fixture(name: &str) -> PathBuf {
    fixtures().join("video").join(name)
}

fn clip(st: &SafeTensors, name: &str) -> (Vec<Vec<f32>>, usize, usize) {
    let t = st.header().get(name).unwrap().clone();
    let (n, c, h, w) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3]);
    let v = st.f32(name).unwrap();
    let frames = (0..n)
        .map(|i| {
            let mut out = vec![0.0; h * w * c];
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        out[(y * w + x) * c + ch] = v[((i * c + ch) * h + y) * w + x];
                    }
                }
            }
            out
        })
        .collect();
    (frames, h, w)
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_superres"));
    c.env_remove("SUPERRES_CPU");
    c
}

#[test]
fn streaming_equals_window_computation_with_bounded_memory() {
    for (ckpt, reference, key) in [
        ("edvr_tsa.pth", "edvr_tsa.safetensors", "out_reflection_circle"),
        ("tdan_module.pt", "tdan.safetensors", "out_tdan"),
    ] {
        let model = Model::open(&video_fixture(ckpt)).unwrap();
        let st = SafeTensors::open(&video_fixture(reference)).unwrap();
        let (frames, h, w) = clip(&st, "frames");
        let (want, ..) = clip(&st, key);
        let mut stream = VideoStream::temporal(model.build_video(CpuLevel::effective()).unwrap(), None);
        let mut got = Vec::new();
        for f in &frames {
            got.extend(stream.push(&RgbFrame { width: w, height: h, data: f.clone() }).unwrap());
        }
        got.extend(stream.finish().unwrap());
        assert_eq!(got.len(), want.len(), "{ckpt}: one output per input frame");
        for (t, (g, r)) in got.iter().zip(&want).enumerate() {
            let err = max_abs_diff(&g.data, r);
            assert!(err <= 1e-4, "{ckpt} frame {t}: {err}");
        }

        // A long clip: the feature cache stays bounded by the window, not the clip length.
        let mut stream = VideoStream::temporal(model.build_video(CpuLevel::effective()).unwrap(), None);
        let half = stream.window_len() / 2;
        let mut peak = 0;
        let mut outputs = 0;
        for i in 0..60 {
            outputs += stream
                .push(&RgbFrame { width: w, height: h, data: frames[i % frames.len()].clone() })
                .unwrap()
                .len();
            peak = peak.max(stream.cached_bytes());
        }
        outputs += stream.finish().unwrap().len();
        assert_eq!(outputs, 60);
        let one_frame = {
            let net = model.build_video(CpuLevel::effective()).unwrap();
            net.features(&frames[0], h, w, &mut superres::graph::Arena::new()).unwrap().bytes()
        };
        assert!(
            peak <= (3 * half + 1) * one_frame,
            "{ckpt}: cache peaked at {peak} bytes ({} frames)",
            peak / one_frame
        );
    }
}

#[test]
fn frame_directory_16bit_matches_pytorch() {
    let st = SafeTensors::open(&video_fixture("edvr_tsa.safetensors")).unwrap();
    let (frames, h, w) = clip(&st, "frames");
    let (want, ..) = clip(&st, "out_reflection_circle");
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("frames");
    std::fs::create_dir_all(&input).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let px: Vec<u16> = f.iter().map(|v| (v * 65535.0).round() as u16).collect();
        let view =
            ImageView { width: w as u32, height: h as u32, channels: 3, samples: SamplesRef::U16(&px) };
        write_image_atomic(&input.join(format!("im{i:03}.png")), &view, &EncodeOptions::new(OutFormat::Png))
            .unwrap();
    }
    let out = d.path().join("out");
    let o = bin()
        .args([
            "video",
            "-m",
            video_fixture("edvr_tsa.pth").to_str().unwrap(),
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--depth",
            "16",
            "-q",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut worst = 0.0f32;
    for (i, r) in want.iter().enumerate() {
        let img = decode_file(&out.join(format!("im{i:03}.png")), &DecodeLimits::default()).unwrap();
        let Samples::U16(px) = img.samples else { panic!("16-bit output expected") };
        for (g, r) in px.iter().zip(r) {
            worst = worst.max((*g as f32 - r.clamp(0.0, 1.0) * 65535.0).abs());
        }
    }
    eprintln!("EDVR frames, 16-bit: max difference {worst:.2} of 65535");
    assert!(worst <= 1.0, "{worst} codes");
}

fn y4m_clip(n: usize, w: usize, h: usize, header_extra: &[&str]) -> Vec<u8> {
    let header = Y4mHeader {
        width: w,
        height: h,
        fps: (30000, 1001),
        aspect: (10, 11),
        interlace: Some('p'),
        colorspace_tag: None,
        subsampling: Subsampling::S420,
        siting: Siting::Left,
        bits: 8,
        extensions: header_extra.iter().map(|s| s.to_string()).collect(),
    };
    let mut wr = Y4mWriter::new(Vec::new(), header).unwrap();
    for i in 0..n {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let f = YuvFrame {
            width: w,
            height: h,
            y: (0..w * h).map(|k| (16 + (k * 7 + i * 11) % 219) as u16).collect(),
            u: (0..cw * ch).map(|k| (100 + (k * 3 + i) % 50) as u16).collect(),
            v: (0..cw * ch).map(|k| (120 + (k * 5 + i) % 40) as u16).collect(),
        };
        wr.write_frame(&f).unwrap();
    }
    wr.into_inner()
}

fn read_y4m(path: &Path) -> (Y4mHeader, usize) {
    let mut r = Y4mReader::new(std::fs::File::open(path).unwrap(), path, 1 << 30).unwrap();
    let h = r.header().clone();
    let mut n = 0;
    while r.read_frame().unwrap().is_some() {
        n += 1;
    }
    (h, n)
}

#[test]
fn y4m_keeps_tags_and_frame_count_and_rejects_bad_streams() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in.y4m");
    std::fs::write(&input, y4m_clip(7, 8, 4, &["COLORRANGE=LIMITED"])).unwrap();
    for model in [video_fixture("edvr_tsa.pth"), fixtures().join("models/srvgg_x2.pth")] {
        let out = d.path().join("out.y4m");
        let o = bin()
            .args([
                "video",
                "-m",
                model.to_str().unwrap(),
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "-q",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (h, n) = read_y4m(&out);
        let s = if model.to_str().unwrap().contains("edvr") { 4 } else { 2 };
        assert_eq!((h.width, h.height, n), (8 * s, 4 * s, 7));
        assert_eq!((h.fps, h.aspect, h.interlace), ((30000, 1001), (10, 11), Some('p')));
        assert_eq!((h.subsampling, h.siting, h.bits), (Subsampling::S420, Siting::Left, 8));
        assert_eq!(h.extensions, ["COLORRANGE=LIMITED"]);
    }
    // A clip shorter than the window still gives one output per frame (edge-policy fallback).
    let short = d.path().join("short.y4m");
    std::fs::write(&short, y4m_clip(1, 8, 4, &[])).unwrap();
    let out = d.path().join("short_out.y4m");
    let o = bin()
        .args([
            "video",
            "-m",
            video_fixture("edvr_tsa.pth").to_str().unwrap(),
            short.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-q",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_y4m(&out).1, 1);

    let edvr = video_fixture("edvr_tsa.pth");
    let check = |bytes: &[u8], needle: &str, extra: &[&str]| {
        let p = d.path().join("bad.y4m");
        std::fs::write(&p, bytes).unwrap();
        let out = d.path().join("bad_out.y4m");
        let mut args = vec![
            "video",
            "-m",
            edvr.to_str().unwrap(),
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-q",
        ];
        args.extend_from_slice(extra);
        let o = bin().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "should fail: {needle}");
        assert!(err.contains(needle), "expected '{needle}' in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "no partial output for '{needle}'");
        for e in std::fs::read_dir(d.path()).unwrap() {
            assert!(!e.unwrap().file_name().to_string_lossy().ends_with(".tmp"));
        }
    };
    let good = y4m_clip(3, 8, 4, &[]);
    check(&good[..good.len() - 5], "truncated", &[]);
    check(&good[..20], "truncated", &[]);
    check(b"YUV4MPEG2 W8 H4 F25:1 C411\nFRAME\n", "colorspace", &[]);
    check(&y4m_clip(2, 6, 4, &[]), "multiples of 4", &[]);
    let interlaced = String::from_utf8_lossy(&good).replacen(" Ip ", " It ", 1).into_bytes();
    check(&interlaced, "interlaced", &[]);
    check(&good, "--depth applies", &["--depth", "16"]);
    check(&good, "unknown edge policy", &["--edge", "mirror"]);
}

#[test]
fn broken_pipe_ends_quietly() {
    let input = y4m_clip(30, 16, 16, &[]);
    let mut child = bin()
        .args(["video", "-m", fixtures().join("models/srvgg_x4.pth").to_str().unwrap(), "-", "-o", "-", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut head = [0u8; 200];
    child.stdout.as_mut().unwrap().read_exact(&mut head).unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let _ = feeder.join();
    assert!(!o.status.success(), "a closed pipe is a non-zero exit");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked") && !err.contains("error"), "quiet exit expected, got: {err}");
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn real_ffmpeg_pipe() {
    if !have("ffmpeg") || !have("ffprobe") {
        eprintln!("SKIP real_ffmpeg_pipe: ffmpeg/ffprobe not installed (.ci/run installs them)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.mkv");
    let script = format!(
        "set -o pipefail; ffmpeg -v error -f lavfi -i testsrc2=size=64x48:rate=24000/1001 -frames:v 9 -pix_fmt yuv420p -f yuv4mpegpipe - \
         | {bin} video -m {model} - -o - -q \
         | ffmpeg -v error -f yuv4mpegpipe -i - -c:v ffv1 {out}",
        bin = env!("CARGO_BIN_EXE_superres"),
        model = video_fixture("edvr_tsa.pth").display(),
        out = out.display()
    );
    let o = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "pipe failed: {}", String::from_utf8_lossy(&o.stderr));
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,r_frame_rate,nb_read_frames",
            "-of",
            "json",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let s = &v["streams"][0];
    assert_eq!((s["width"].as_u64(), s["height"].as_u64()), (Some(256), Some(192)));
    assert_eq!(s["r_frame_rate"], "24000/1001");
    assert_eq!(s["nb_read_frames"], "9");
}

#[test]
fn video_self_ensemble_averages_the_transformed_windows() {
    use superres::pipeline::{Dihedral, Ensemble};
    let model = Model::open(&video_fixture("edvr_tsa.pth")).unwrap();
    let st = SafeTensors::open(&video_fixture("edvr_tsa.safetensors")).unwrap();
    let (frames, h, w) = clip(&st, "frames");
    let run = |tta: Ensemble, frames: &[Vec<f32>], h: usize, w: usize| -> Vec<RgbFrame> {
        let mut s = VideoStream::temporal_tta(model.build_video(CpuLevel::effective()).unwrap(), None, tta);
        let mut out = Vec::new();
        for f in frames {
            out.extend(s.push(&RgbFrame { width: w, height: h, data: f.clone() }).unwrap());
        }
        out.extend(s.finish().unwrap());
        out
    };
    let ens = run(Ensemble::x8(), &frames, h, w);
    // By hand: transform every frame, run plainly, transform the outputs back, average.
    let mut sum = vec![vec![0.0f32; ens[0].data.len()]; frames.len()];
    for d in Dihedral::ALL {
        let tf: Vec<Vec<f32>> = frames.iter().map(|f| d.apply(f, h, w, 3).0).collect();
        let (th, tw) = d.dims(h, w);
        for (t, o) in run(Ensemble::none(), &tf, th, tw).iter().enumerate() {
            let back = d.invert().apply(&o.data, o.height, o.width, 3).0;
            sum[t].iter_mut().zip(&back).for_each(|(a, b)| *a += b);
        }
    }
    for (t, (e, s)) in ens.iter().zip(&sum).enumerate() {
        let avg: Vec<f32> = s.iter().map(|v| v / 8.0).collect();
        assert!(max_abs_diff(&e.data, &avg) <= 1e-6, "frame {t}");
        assert_eq!((e.width, e.height), (w * 4, h * 4));
    }
    let plain = run(Ensemble::none(), &frames, h, w);
    assert!(
        max_abs_diff(&plain[2].data, &ens[2].data) > 1e-4,
        "the ensemble should change a random-weight model's output"
    );
}
