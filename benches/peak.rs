//! Kernel throughput as a fraction of the machine's FMA rate, measured in alternation: each round
//! times the FMA-chain loop (`superres::kernels::peak`) on every thread of the pool, then the
//! packed GEMM and the direct 3x3 convolution on the conv shapes of the models, so the ratio holds
//! even where the machine's clock drifts between runs (the 2-core development VM drifts 10-40%).
//! Minimum time over the rounds; prints GFLOP/s and the ratio to the loop's rate.
//!
//! `cargo bench --bench peak` (env: `BENCH_THREADS=1,2`, `PEAK_ROUNDS=6`, `SUPERRES_CPU=avx2`).

mod common;

use common::{env_list, rand_vec};
use std::time::Instant;
use superres::kernels::conv::{Conv2d, ConvSpec};
use superres::kernels::gemm::{sgemm_packed, Activation, Epilogue, PackedB};
use superres::kernels::peak::{fma_chains, fma_chains_flops};
use superres::tensor::Tensor;
use superres::CpuLevel;

/// Best seconds per call of `f` over `calls` calls.
fn time(best: &mut f64, calls: usize, mut f: impl FnMut()) {
    let t = Instant::now();
    for _ in 0..calls {
        f();
    }
    *best = best.min(t.elapsed().as_secs_f64() / calls as f64);
}

struct Work {
    name: String,
    flop: f64,
    run: Box<dyn FnMut() + Send>,
    best: f64,
}

fn gemm(level: CpuLevel, m: usize, n: usize, k: usize) -> Work {
    let a = rand_vec(m * k);
    let bm = rand_vec(k * n);
    let b = PackedB::pack(level, k, n, |kk, nn| bm[kk * n + nn]);
    let mut c = vec![0.0f32; m * n];
    Work {
        name: format!("sgemm m{m} n{n} k{k}"),
        flop: 2.0 * (m * n * k) as f64,
        run: Box::new(move || sgemm_packed(level, m, &a, k, &b, &mut c, n, &Epilogue::NONE)),
        best: f64::MAX,
    }
}

fn conv(level: CpuLevel, cin: usize, cout: usize, h: usize, w: usize) -> Work {
    let spec = ConvSpec::same(cin, cout, 3);
    let conv =
        Conv2d::new(level, spec, &rand_vec(cout * spec.k()), Some(&rand_vec(cout)), Activation::Relu, None);
    let x = Tensor::from_hwc(h, w, cin, 1, &rand_vec(h * w * cin));
    let mut y = Tensor::zeros(h, w, cout, 1);
    Work {
        name: format!("conv 3x3 {cin}->{cout} {w}x{h} direct"),
        flop: 2.0 * spec.macs(h, w) as f64,
        run: Box::new(move || conv.forward_into(&x, &mut y)),
        best: f64::MAX,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let level = CpuLevel::effective();
    let rounds = env_list("PEAK_ROUNDS", &[6])[0].max(1);
    for threads in env_list("BENCH_THREADS", &[1, 2]) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut works = vec![
            gemm(level, 4096, 64, 576),
            gemm(level, 57600, 64, 576),
            gemm(level, 4096, 128, 1152),
            gemm(level, 4096, 256, 2304),
            conv(level, 64, 64, 180, 320),
            conv(level, 128, 128, 90, 160),
            conv(level, 256, 256, 90, 160),
        ];
        let iters = 20_000_000;
        let loop_flop = (fma_chains_flops(level, iters) * threads as u64) as f64;
        let mut loop_best = f64::MAX;
        for _ in 0..rounds {
            time(&mut loop_best, 1, || {
                pool.broadcast(|_| std::hint::black_box(fma_chains(level, iters)));
            });
            for w in works.iter_mut() {
                // About 2 GFLOP per timing, at least one call.
                let calls = ((2e9 / w.flop) as usize).max(1);
                // The calls run from a worker of the pool, as the engine runs its layer loops
                // (`graph::on_pool`): one hand-over to the pool per timing, not one per call,
                // whose wake-up is no part of the kernel.
                let run = &mut w.run;
                pool.install(|| time(&mut w.best, calls, &mut *run));
            }
        }
        let peak = loop_flop / loop_best / 1e9;
        println!("{level}, {threads} thread(s), min of {rounds} rounds: FMA-chain loop {peak:.1} GFLOP/s");
        for w in &works {
            let g = w.flop / w.best / 1e9;
            println!("  {:<34} {g:7.1} GFLOP/s  {:.3} of the loop", w.name, g / peak);
        }
    }
}
