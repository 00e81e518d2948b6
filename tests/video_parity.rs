//! Deformable convolution and the video models (EDVR, TDAN) against PyTorch references made by
//! tools/make_video_fixtures.py: every frame of a short clip, under each temporal edge policy, on
//! every CPU level this machine supports; 1e-4 max abs error.

mod common;

use common::*;
use std::collections::HashMap;
use superres::graph::Arena;
use superres::kernels::conv::ConvSpec;
use superres::kernels::deform::{BorderRule, DeformConv2d};
use superres::kernels::gemm::Activation;
use superres::models::video::FrameFeatures;
use superres::models::{EdgePolicy, Model};
use superres::tensor::Tensor;
use superres::weights::safetensors::SafeTensors;
use superres::CpuLevel;

fn video_fixture(name: &str) -> std::path::PathBuf {
    fixtures().join("video").join(name)
}

/// NCHW tensor (any batch) as a list of dense HWC images.
fn frames(st: &SafeTensors, name: &str) -> (Vec<Vec<f32>>, usize, usize, usize) {
    let t = st.header().get(name).unwrap_or_else(|| panic!("fixture lacks '{name}'")).clone();
    let (n, c, h, w) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3]);
    let v = st.f32(name).unwrap();
    let imgs = (0..n)
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
    (imgs, h, w, c)
}

#[test]
fn deformable_convolution_matches_torchvision_and_dcnv1() {
    let st = SafeTensors::open(&video_fixture("dcn.safetensors")).unwrap();
    let (x, h, w, c) = frames(&st, "x");
    let (off, _, _, oc) = frames(&st, "offset");
    let wt = st.f32("weight").unwrap().to_vec();
    let bias = st.f32("bias").unwrap().to_vec();
    let spec = ConvSpec::same(c, bias.len(), 3);
    let xt = Tensor::from_hwc(h, w, c, 0, &x[0]);
    let ot = Tensor::from_hwc(h, w, oc, 0, &off[0]);
    for level in CpuLevel::supported() {
        for (name, modulated, rule, b) in [
            ("tv_mod", true, BorderRule::Torchvision, Some(&bias[..])),
            ("tv_plain", false, BorderRule::Torchvision, None),
            ("v1", false, BorderRule::Dcnv1, None),
        ] {
            let d = DeformConv2d::new(level, spec, &wt, b, Activation::None, 4, modulated, rule);
            let got = d.forward(&xt, &ot, 0).to_hwc();
            let (want, ..) = frames(&st, name);
            let err = max_abs_diff(&got, &want[0]);
            eprintln!("dcn {name:>8} {level:>8}: max abs error {err:.2e}");
            assert!(err <= 1e-4, "{name} at {level}: {err}");
        }
    }
}

#[test]
fn video_models_match_pytorch_for_every_frame_and_policy() {
    let man: serde_json::Value =
        serde_json::from_slice(&std::fs::read(video_fixture("manifest.json")).unwrap()).unwrap();
    for case in man["models"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let model = Model::open(&video_fixture(case["checkpoint"].as_str().unwrap()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.arch().name(), case["arch"].as_str().unwrap());
        let st = SafeTensors::open(&video_fixture(case["reference"].as_str().unwrap())).unwrap();
        let (clip, h, w, _) = frames(&st, "frames");
        let n = clip.len();
        for level in CpuLevel::supported() {
            let net = model.build_video(level).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut arena = Arena::new();
            let cache: Vec<FrameFeatures> =
                clip.iter().map(|f| net.features(f, h, w, &mut arena).unwrap()).collect();
            for p in case["policies"].as_array().unwrap() {
                let p = p.as_str().unwrap();
                let policy: EdgePolicy = p.parse().unwrap();
                let (want, ..) = frames(&st, &format!("out_{p}"));
                let mut worst = 0.0f32;
                for (t, want) in want.iter().enumerate() {
                    let idx = policy.window(t, net.num_frames() / 2, Some(n));
                    let window: Vec<&FrameFeatures> = idx.iter().map(|&i| &cache[i]).collect();
                    let got = net.window(&window, &mut arena).unwrap();
                    worst = worst.max(max_abs_diff(&got, want));
                }
                eprintln!("{name:>16} {p:>17} {level:>8}: max abs error {worst:.2e}");
                assert!(worst <= 1e-4, "{name} {p} at {level}: {worst}");
            }
        }
        let _ = HashMap::<(), ()>::new();
    }
}
