//! Video: the deformable convolution on EDVR/TDAN's shape (64 channels, 8 deformable groups,
//! 320x180) and whole EDVR-M / TDAN frames with random weights in their official layouts: the
//! steady-state cost of one output frame of a stream (one frame's features + one window) and a
//! single 5-frame window computed from scratch. Throughput is in FLOP (2 per MAC) per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use superres::graph::Arena;
use superres::kernels::conv::ConvSpec;
use superres::kernels::deform::{BorderRule, DeformConv2d};
use superres::kernels::gemm::Activation;
use superres::models::{Model, OpenOptions};
use superres::tensor::Tensor;
use superres::weights::{StateDict, TensorData};
use superres::CpuLevel;

fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

struct Sd {
    sd: StateDict,
    seed: u64,
}

impl Sd {
    fn conv(&mut self, name: &str, o: usize, i: usize, k: usize, bias: bool) {
        self.seed += 1;
        let std = if name.contains("offset") || name.starts_with("off2d") { 0.2 } else { 2.0 }
            / ((i * k * k) as f32).sqrt();
        self.sd.tensors.push((
            format!("{name}.weight"),
            TensorData::from_f32(vec![o, i, k, k], &rand_vec(o * i * k * k, self.seed, std)),
        ));
        if bias {
            self.sd.tensors.push((
                format!("{name}.bias"),
                TensorData::from_f32(vec![o], &rand_vec(o, self.seed + 7, 0.02)),
            ));
        }
    }
    fn model(self, name: &str) -> Model {
        Model::from_state_dict(Path::new(name), self.sd, &OpenOptions::default()).unwrap()
    }
}

/// EDVR-M: 64 features, 5 frames, 8 groups, 5 extraction and 10 reconstruction blocks, TSA.
fn edvr_m() -> Model {
    let (f, t, g) = (64, 5, 8);
    let mut s = Sd { sd: StateDict::default(), seed: 0 };
    s.conv("conv_first", f, 3, 3, true);
    for i in 0..5 {
        s.conv(&format!("feature_extraction.{i}.conv1"), f, f, 3, true);
        s.conv(&format!("feature_extraction.{i}.conv2"), f, f, 3, true);
    }
    for n in ["conv_l2_1", "conv_l2_2", "conv_l3_1", "conv_l3_2"] {
        s.conv(n, f, f, 3, true);
    }
    for l in ["l3", "l2", "l1"] {
        s.conv(&format!("pcd_align.offset_conv1.{l}"), f, 2 * f, 3, true);
        s.conv(&format!("pcd_align.offset_conv2.{l}"), f, if l == "l3" { f } else { 2 * f }, 3, true);
        if l != "l3" {
            s.conv(&format!("pcd_align.offset_conv3.{l}"), f, f, 3, true);
            s.conv(&format!("pcd_align.feat_conv.{l}"), f, 2 * f, 3, true);
        }
        s.conv(&format!("pcd_align.dcn_pack.{l}"), f, f, 3, true);
        s.conv(&format!("pcd_align.dcn_pack.{l}.conv_offset"), 3 * g * 9, f, 3, true);
    }
    s.conv("pcd_align.cas_offset_conv1", f, 2 * f, 3, true);
    s.conv("pcd_align.cas_offset_conv2", f, f, 3, true);
    s.conv("pcd_align.cas_dcnpack", f, f, 3, true);
    s.conv("pcd_align.cas_dcnpack.conv_offset", 3 * g * 9, f, 3, true);
    for (n, i, k) in [
        ("temporal_attn1", f, 3),
        ("temporal_attn2", f, 3),
        ("feat_fusion", t * f, 1),
        ("spatial_attn1", t * f, 1),
        ("spatial_attn2", 2 * f, 1),
        ("spatial_attn3", f, 3),
        ("spatial_attn4", f, 1),
        ("spatial_attn5", f, 3),
        ("spatial_attn_l1", f, 1),
        ("spatial_attn_l2", 2 * f, 3),
        ("spatial_attn_l3", f, 3),
        ("spatial_attn_add1", f, 1),
        ("spatial_attn_add2", f, 1),
    ] {
        s.conv(&format!("fusion.{n}"), f, i, k, true);
    }
    for i in 0..10 {
        s.conv(&format!("reconstruction.{i}.conv1"), f, f, 3, true);
        s.conv(&format!("reconstruction.{i}.conv2"), f, f, 3, true);
    }
    s.conv("upconv1", 4 * f, f, 3, true);
    s.conv("upconv2", 256, f, 3, true);
    s.conv("conv_hr", 64, 64, 3, true);
    s.conv("conv_last", 3, 64, 3, true);
    s.model("edvr_m_random")
}

/// TDAN: 64 features, 8 groups, 5 extraction and 10 reconstruction blocks.
fn tdan() -> Model {
    let (f, g) = (64, 8);
    let mut s = Sd { sd: StateDict::default(), seed: 100 };
    s.conv("conv_first", f, 3, 3, true);
    for i in 0..5 {
        s.conv(&format!("residual_layer.{i}.conv1"), f, f, 3, true);
        s.conv(&format!("residual_layer.{i}.conv2"), f, f, 3, true);
    }
    s.conv("cr", f, 2 * f, 3, true);
    for (off, dc) in
        [("off2d_1", "dconv_1"), ("off2d_2", "deconv_2"), ("off2d_3", "deconv_3"), ("off2d", "dconv")]
    {
        s.conv(off, 18 * g, f, 3, true);
        s.conv(dc, f, f, 3, false);
    }
    s.conv("recon_lr", 3, f, 3, true);
    s.conv("fea_ex.0", f, 15, 3, true);
    for i in 0..10 {
        s.conv(&format!("recon_layer.{i}.conv1"), f, f, 3, true);
        s.conv(&format!("recon_layer.{i}.conv2"), f, f, 3, true);
    }
    s.conv("up.0.0", 4 * f, f, 3, true);
    s.conv("up.0.2", 4 * f, f, 3, true);
    s.conv("up.1", 3, f, 3, false);
    s.model("tdan_random")
}

fn deform(c: &mut Criterion) {
    let level = CpuLevel::effective();
    let (h, w, ch, g) = (180, 320, 64, 8);
    let spec = ConvSpec::same(ch, ch, 3);
    let x = Tensor::from_hwc(h, w, ch, 0, &rand_vec(h * w * ch, 1, 2.0));
    let off = Tensor::from_hwc(h, w, 3 * g * 9, 0, &rand_vec(h * w * 3 * g * 9, 2, 4.0));
    let wt = rand_vec(ch * spec.k(), 3, 0.1);
    let mut grp = c.benchmark_group(format!("deform/{level}"));
    grp.sample_size(10);
    grp.throughput(Throughput::Elements(2 * spec.macs(h, w)));
    for (name, modulated, rule) in
        [("dcnv2_mask_tv", true, BorderRule::Torchvision), ("dcnv1", false, BorderRule::Dcnv1)]
    {
        let d = DeformConv2d::new(level, spec, &wt, None, Activation::None, g, modulated, rule);
        for t in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            grp.bench_function(format!("{name}_64ch_8g_320x180/{t}t"), |b| {
                pool.install(|| b.iter(|| d.forward(&x, &off, 0)))
            });
        }
    }
    grp.finish();
}

fn video_models(c: &mut Criterion) {
    let level = CpuLevel::effective();
    let (h, w) = (180, 320);
    let frame = rand_vec(h * w * 3, 9, 1.0).iter().map(|v| v + 0.5).collect::<Vec<_>>();
    let mut grp = c.benchmark_group(format!("video/{level}"));
    grp.sample_size(10);
    grp.measurement_time(std::time::Duration::from_secs(30));
    for (name, model) in [("edvr_m", edvr_m()), ("tdan", tdan())] {
        let net = model.build_video(level).unwrap();
        let t = net.num_frames();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut arena = Arena::new();
        let cached: Vec<_> =
            pool.install(|| (0..t).map(|_| net.features(&frame, h, w, &mut arena).unwrap()).collect());
        grp.bench_function(format!("{name}_320x180_stream_per_frame/2t"), |b| {
            pool.install(|| {
                b.iter(|| {
                    let f = net.features(&frame, h, w, &mut arena).unwrap();
                    let win: Vec<_> = (0..t).map(|i| if i == t / 2 { &f } else { &cached[i] }).collect();
                    net.window(&win, &mut arena).unwrap()
                })
            })
        });
        grp.bench_function(format!("{name}_320x180_single_window/2t"), |b| {
            pool.install(|| {
                b.iter(|| {
                    let feats: Vec<_> =
                        (0..t).map(|_| net.features(&frame, h, w, &mut arena).unwrap()).collect();
                    let win: Vec<_> = feats.iter().collect();
                    net.window(&win, &mut arena).unwrap()
                })
            })
        });
    }
    grp.finish();
}

criterion_group!(benches, deform, video_models);
criterion_main!(benches);
