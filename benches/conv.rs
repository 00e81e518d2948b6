//! Convolution and GEMM throughput on shapes taken from the shipped and paper models.
//! Throughput is reported in FLOP (2 per multiply-accumulate): criterion's "elem/s" is FLOP/s.
//!
//! `SUPERRES_CPU=avx2 cargo bench --bench conv` forces a level; `BENCH_THREADS=1,2` picks pools.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use superres::kernels::conv::{Conv2d, ConvSpec};
use superres::kernels::gemm::{sgemm_packed, Activation, Epilogue, PackedB};
use superres::tensor::Tensor;
use superres::CpuLevel;

fn rand_vec(n: usize) -> Vec<f32> {
    let mut x = 0x2545F4914F6CDD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn threads() -> Vec<usize> {
    std::env::var("BENCH_THREADS")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2])
}

fn conv_benches(c: &mut Criterion) {
    let level = CpuLevel::effective();
    // (name, cin, cout, k, h, w)
    let shapes = [
        ("edsr_64to64_3x3_320x180", 64, 64, 3, 180, 320),
        ("srvgg_64to48_3x3_320x180", 64, 48, 3, 180, 320),
        ("rrdb_96to32_3x3_320x180", 96, 32, 3, 180, 320),
        ("first_3to64_3x3_320x180", 3, 64, 3, 180, 320),
        ("last_64to3_3x3_640x360", 64, 3, 3, 360, 640),
    ];
    let mut g = c.benchmark_group(format!("conv/{level}"));
    g.sample_size(10);
    for (name, cin, cout, k, h, w) in shapes {
        let spec = ConvSpec::same(cin, cout, k);
        let wt = rand_vec(cout * spec.k());
        let bias = rand_vec(cout);
        let conv = Conv2d::new(level, spec, &wt, Some(&bias), Activation::Relu, None);
        let x = Tensor::from_hwc(h, w, cin, 1, &rand_vec(h * w * cin));
        let flops = 2 * spec.macs(h, w);
        g.throughput(Throughput::Elements(flops));
        for t in threads() {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            let mut y = Tensor::zeros(h, w, cout, 1);
            g.bench_with_input(BenchmarkId::new(name, format!("{t}t")), &t, |b, _| {
                pool.install(|| b.iter(|| conv.forward_into(&x, &mut y)))
            });
        }
    }
    g.finish();
}

fn gemm_benches(c: &mut Criterion) {
    let level = CpuLevel::effective();
    let mut g = c.benchmark_group(format!("sgemm/{level}"));
    g.sample_size(10);
    for (m, n, k) in [(4096, 64, 576), (57600, 64, 576), (4096, 256, 2304)] {
        let a = rand_vec(m * k);
        let bm = rand_vec(k * n);
        let b = PackedB::pack(level, k, n, |kk, nn| bm[kk * n + nn]);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        for t in threads() {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            g.bench_function(BenchmarkId::new(format!("m{m}_n{n}_k{k}"), format!("{t}t")), |bch| {
                pool.install(|| bch.iter(|| sgemm_packed(level, m, &a, k, &b, &mut out, n, &Epilogue::NONE)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, conv_benches, gemm_benches);
criterion_main!(benches);
