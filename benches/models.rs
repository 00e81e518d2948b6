//! Whole-model throughput on the input size of the anchors (320x180 LR, ../shared/anchors/PERF.md):
//! EDSR-baseline x4 (random weights in the BasicSR layout) and the shipped default model.
//! Throughput is in FLOP (2 per MAC) per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use superres::graph::Arena;
use superres::models::{Model, OpenOptions};
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

/// EDSR-baseline (64 features, 16 blocks) x4 with random weights, BasicSR names.
fn edsr_baseline() -> Model {
    let (f, blocks) = (64usize, 16usize);
    let mut sd = StateDict::default();
    let mut seed = 1;
    let mut conv = |sd: &mut StateDict, name: &str, cout: usize, cin: usize| {
        seed += 1;
        let fan = (cin * 9) as f32;
        sd.tensors.push((
            format!("{name}.weight"),
            TensorData::from_f32(vec![cout, cin, 3, 3], &rand_vec(cout * cin * 9, seed, 2.0 / fan.sqrt())),
        ));
        sd.tensors.push((
            format!("{name}.bias"),
            TensorData::from_f32(vec![cout], &rand_vec(cout, seed + 1000, 0.01)),
        ));
    };
    conv(&mut sd, "conv_first", f, 3);
    for i in 0..blocks {
        conv(&mut sd, &format!("body.{i}.conv1"), f, f);
        conv(&mut sd, &format!("body.{i}.conv2"), f, f);
    }
    conv(&mut sd, "conv_after_body", f, f);
    conv(&mut sd, "upsample.0", 4 * f, f);
    conv(&mut sd, "upsample.2", 4 * f, f);
    conv(&mut sd, "conv_last", 3, f);
    Model::from_state_dict(Path::new("edsr_baseline_random"), sd, &OpenOptions::default()).unwrap()
}

fn bench_model(c: &mut Criterion, name: &str, model: &Model) {
    let level = CpuLevel::effective();
    let net = model.build(level, None).unwrap();
    let (h, w) = (180, 320);
    let x = rand_vec(h * w * 3, 7, 1.0).iter().map(|v| v + 0.5).collect::<Vec<_>>();
    let macs = net.graph().macs(h, w);
    let mut g = c.benchmark_group(format!("model/{level}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * macs));
    let mut arena = Arena::new();
    for t in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        g.bench_function(format!("{name}_320x180/{t}t"), |b| {
            pool.install(|| b.iter(|| net.run_hwc(&x, h, w, &mut arena).unwrap()))
        });
    }
    g.finish();
}

fn models(c: &mut Criterion) {
    bench_model(c, "edsr_baseline_x4", &edsr_baseline());
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/realesr-animevideov3.safetensors");
    match Model::open(&shipped) {
        Ok(m) => bench_model(c, "realesr_animevideov3_x4", &m),
        Err(e) => eprintln!("skipping the shipped model: {e}"),
    }
}

criterion_group!(benches, models);
criterion_main!(benches);
