//! Convolution and GEMM throughput on shapes taken from the shipped and paper models.
//! Throughput is reported in FLOP (2 per multiply-accumulate): criterion's "elem/s" is FLOP/s.
//!
//! `SUPERRES_CPU=avx2 cargo bench --bench conv` forces a level; `BENCH_THREADS=1,2` picks pools.

mod common;

use common::{env_list, rand_vec};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use superres::kernels::conv::{Conv2d, ConvSpec};
use superres::kernels::gemm::{sgemm_packed, Activation, Epilogue, PackedB};
use superres::tensor::Tensor;
use superres::CpuLevel;

fn threads() -> Vec<usize> {
    env_list("BENCH_THREADS", &[1, 2])
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

/// Why NHWC with an implicit im2col: the same 3x3 64->64 conv on 320x180 (one thread) as
/// (a) our NHWC direct path, (b) NHWC with the im2col matrix written out, then the packed GEMM,
/// (c) the classic NCHW im2col + GEMM (output channels as GEMM rows, pixels as columns, so the
/// im2col matrix is the B operand and must be packed on every call).
fn layout_benches(c: &mut Criterion) {
    let level = CpuLevel::effective();
    let (h, w, cin, cout) = (180usize, 320usize, 64usize, 64usize);
    let spec = ConvSpec::same(cin, cout, 3);
    let k = spec.k();
    let wt = rand_vec(cout * k);
    let x_hwc = rand_vec(h * w * cin);
    let conv = Conv2d::new(level, spec, &wt, None, Activation::None, None);
    let x = Tensor::from_hwc(h, w, cin, 1, &x_hwc);
    let mut y = Tensor::zeros(h, w, cout, 1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut g = c.benchmark_group(format!("layout/{level}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * spec.macs(h, w)));
    g.bench_function("nhwc_implicit_im2col", |b| pool.install(|| b.iter(|| conv.forward_into(&x, &mut y))));

    // (b) NHWC, explicit im2col rows [pixel][ky][kx][c], weights packed once.
    let wk = PackedB::pack(level, k, cout, |kk, o| {
        let (ci, kx, ky) = (kk % cin, (kk / cin) % 3, kk / (cin * 3));
        wt[((o * cin + ci) * 3 + ky) * 3 + kx]
    });
    let mut col = vec![0.0f32; h * w * k];
    let mut out = vec![0.0f32; h * w * cout];
    g.bench_function("nhwc_explicit_im2col_gemm", |b| {
        pool.install(|| {
            b.iter(|| {
                for yy in 0..h {
                    for xx in 0..w {
                        let row = &mut col[(yy * w + xx) * k..][..k];
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (sy, sx) = (yy as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                let dst = &mut row[(ky * 3 + kx) * cin..][..cin];
                                if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                                    dst.fill(0.0);
                                } else {
                                    dst.copy_from_slice(
                                        &x_hwc[(sy as usize * w + sx as usize) * cin..][..cin],
                                    );
                                }
                            }
                        }
                    }
                }
                sgemm_packed(level, h * w, &col, k, &wk, &mut out, cout, &Epilogue::NONE)
            })
        })
    });

    // (c) NCHW im2col [c][ky][kx] x [pixel], C[cout x pixels] = W[cout x K] · col.
    let x_chw: Vec<f32> = (0..cin * h * w).map(|i| x_hwc[(i % (h * w)) * cin + i / (h * w)]).collect();
    let mut col_t = vec![0.0f32; k * h * w];
    let mut out_t = vec![0.0f32; cout * h * w];
    let w_rows: Vec<f32> = wt.clone();
    g.bench_function("nchw_im2col_gemm", |b| {
        pool.install(|| {
            b.iter(|| {
                for ci in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let r = &mut col_t[((ci * 3 + ky) * 3 + kx) * h * w..][..h * w];
                            for yy in 0..h {
                                let sy = yy as isize + ky as isize - 1;
                                for xx in 0..w {
                                    let sx = xx as isize + kx as isize - 1;
                                    r[yy * w + xx] =
                                        if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                                            0.0
                                        } else {
                                            x_chw[(ci * h + sy as usize) * w + sx as usize]
                                        };
                                }
                            }
                        }
                    }
                }
                superres::kernels::gemm::sgemm(
                    level,
                    cout,
                    h * w,
                    k,
                    &w_rows,
                    k,
                    &col_t,
                    h * w,
                    &mut out_t,
                    h * w,
                )
            })
        })
    });
    g.finish();
}

/// The same 3x3 layers through Winograd F(4x4, 3x3): throughput counted in the direct algorithm's
/// FLOP, so the number shows the effective speed-up.
fn winograd_benches(c: &mut Criterion) {
    use superres::kernels::winograd::WinogradConv;
    let level = CpuLevel::effective();
    let mut g = c.benchmark_group(format!("winograd/{level}"));
    g.sample_size(10);
    for (name, cin, cout, h, w) in [
        ("edsr_64to64_3x3_320x180", 64, 64, 180, 320),
        ("rrdb_96to32_3x3_320x180", 96, 32, 180, 320),
        ("last_64to3_3x3_640x360", 64, 3, 360, 640),
    ] {
        let spec = ConvSpec::same(cin, cout, 3);
        let wt = rand_vec(cout * spec.k());
        let bias = rand_vec(cout);
        let wc = WinogradConv::new(level, cin, cout, &wt, Some(&bias), None);
        let x = Tensor::from_hwc(h, w, cin, 1, &rand_vec(h * w * cin));
        let mut y = Tensor::zeros(h, w, cout, 1);
        g.throughput(Throughput::Elements(2 * spec.macs(h, w)));
        for t in threads() {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            g.bench_function(BenchmarkId::new(name, format!("{t}t")), |b| {
                pool.install(|| b.iter(|| wc.forward_into(&x, &mut y, Activation::Relu)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, conv_benches, gemm_benches, layout_benches, winograd_benches);
criterion_main!(benches);
