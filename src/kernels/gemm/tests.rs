use super::*;
use proptest::prelude::*;

/// Which kernel to run: a real CPU level, the AVX-512 blocking on emulated 16-lane vectors, or
/// the NEON blocking (lane-indexed FMA, 4-vector panels) on emulated 4-lane vectors.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Level(CpuLevel),
    Emu512,
    EmuNeon,
}

fn kinds() -> Vec<Kind> {
    let mut v: Vec<Kind> = CpuLevel::supported().into_iter().map(Kind::Level).collect();
    for l in [CpuLevel::Avx2, CpuLevel::Avx512, CpuLevel::Neon] {
        if !l.is_supported() {
            eprintln!("note: {l} kernels not tested: this CPU lacks {l}");
        }
    }
    v.push(Kind::Emu512);
    v.push(Kind::EmuNeon);
    v
}

/// The AVX-512 blocking (`avx512.rs`) on the emulated 16-lane vector, so its tile shapes and tails
/// are tested on machines without AVX-512, aarch64 included.
unsafe fn avx512_line_emulated(line: &Line, ops: &Ops, panels: std::ops::Range<usize>) {
    use super::ukernel::{line_driver, tail_rows, tile, Out};
    use crate::kernels::simd::emu::Emu16;
    use crate::kernels::simd::Simd;
    line_driver!(Emu16::default(), Emu16, line, ops, panels, 12, [1 2 3 4 5 6 7 8 9 10 11],
        24, [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23]);
}

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    act: Activation,
    bias: bool,
    residual: Option<f32>,
    /// Second residual scale: `res2 + s2·(res + s·y)`.
    residual2: Option<f32>,
    /// K as this many equal segments with NaN-filled gaps between them in A's rows (1 = dense).
    segs: usize,
}

/// The second residual's values: derived from the first so the signature stays small.
fn res2_of(res: &[f32]) -> Vec<f32> {
    res.iter().rev().map(|v| v * 0.5 + 0.25).collect()
}

/// Reference: act(A·B + bias), then res + scale·y, then res2 + scale2·that.
fn reference(case: &Case, a: &[f32], b: &[f32], bias: &[f32], slopes: &[f32], res: &[f32]) -> Vec<f32> {
    let res2 = res2_of(res);
    let (m, n, k) = (case.m, case.n, case.k);
    let mut c = vec![0.0; m * n];
    reference::sgemm(m, n, k, a, k, b, n, &mut c, n);
    for i in 0..m {
        for j in 0..n {
            let mut v = c[i * n + j] as f64;
            if case.bias {
                v += bias[j] as f64;
            }
            v = match case.act {
                Activation::None => v,
                Activation::Relu => v.max(0.0),
                Activation::LeakyRelu(s) => {
                    if v > 0.0 {
                        v
                    } else {
                        v * s as f64
                    }
                }
                Activation::PRelu => {
                    if v > 0.0 {
                        v
                    } else {
                        v * slopes[j] as f64
                    }
                }
            };
            if let Some(s) = case.residual {
                v = res[i * n + j] as f64 + s as f64 * v;
            }
            if let Some(s) = case.residual2 {
                v = res2[i * n + j] as f64 + s as f64 * v;
            }
            c[i * n + j] = v as f32;
        }
    }
    c
}

fn run(kind: Kind, case: &Case, a: &[f32], b: &[f32], bias: &[f32], slopes: &[f32], res: &[f32]) -> Vec<f32> {
    let (m, n, k) = (case.m, case.n, case.k);
    let shape = match kind {
        Kind::Level(l) => Shape::of(l),
        Kind::Emu512 => Shape::of(CpuLevel::Avx512),
        Kind::EmuNeon => Shape::of(CpuLevel::Neon),
    };
    let packed = PackedB::pack_shape(shape, k, n, |kk, nn| b[kk * n + nn]);
    let biasp = pad_channels(bias, &packed);
    let slopesp = pad_channels(slopes, &packed);
    let ep = Epilogue {
        bias: case.bias.then_some(biasp.as_slice()),
        act: case.act,
        prelu: Some(slopesp.as_slice()),
        res_scale: case.residual.unwrap_or(1.0),
    };
    // A guard column past n detects stores outside the valid columns.
    let ldc = n + 3;
    let mut c = vec![f32::NAN; m * ldc];
    let resv: Vec<f32> =
        (0..m).flat_map(|i| res[i * n..(i + 1) * n].iter().copied().chain([7.0; 3])).collect();
    // Rows of A as `segs` segments separated by NaN gaps: a read outside a segment poisons the
    // result.
    const GAP: usize = 3;
    let seg_len = k / case.segs;
    assert_eq!(seg_len * case.segs, k);
    let a_rs = k + GAP * case.segs;
    let mut a_phys = vec![f32::NAN; m * a_rs];
    let kl = KLayout {
        seg_offsets: (0..case.segs).map(|s| (GAP + s * (seg_len + GAP)) as isize).collect(),
        seg_len,
    };
    for i in 0..m {
        for (s, &off) in kl.seg_offsets.iter().enumerate() {
            let dst = i * a_rs + off as usize;
            a_phys[dst..dst + seg_len].copy_from_slice(&a[i * k + s * seg_len..][..seg_len]);
        }
    }
    let res2 = res2_of(res);
    let res2v: Vec<f32> =
        (0..m).flat_map(|i| res2[i * n..(i + 1) * n].iter().copied().chain([9.0; 3])).collect();
    let mut ops = Ops::new(&packed, &kl, &ep);
    ops.res2_scale = case.residual2.unwrap_or(1.0);
    let line = Line {
        m,
        a: a_phys.as_ptr(),
        a_rs: a_rs as isize,
        c: c.as_mut_ptr(),
        c_rs: ldc as isize,
        res: if case.residual.is_some() { resv.as_ptr() } else { std::ptr::null() },
        res_rs: ldc as isize,
        res2: if case.residual2.is_some() { res2v.as_ptr() } else { std::ptr::null() },
        res2_rs: ldc as isize,
    };
    // SAFETY: buffers sized for m x k, m x ldc; the level is supported (from kinds()).
    unsafe {
        match kind {
            Kind::Level(l) => run_line(l, &line, &ops, 0..packed.panels()),
            Kind::Emu512 => avx512_line_emulated(&line, &ops, 0..packed.panels()),
            Kind::EmuNeon => neon::line_emulated(&line, &ops, 0..packed.panels()),
        }
    }
    for i in 0..m {
        for j in n..ldc {
            assert!(c[i * ldc + j].is_nan(), "{kind:?} wrote past column n at row {i}");
        }
    }
    (0..m).flat_map(|i| c[i * ldc..i * ldc + n].to_vec()).collect()
}

fn check(case: Case) {
    let (m, n, k) = (case.m, case.n, case.k);
    let a = rand_vec(m * k, 1);
    let b = rand_vec(k * n, 2);
    let bias = rand_vec(n, 3);
    let slopes = rand_vec(n, 4);
    let res = rand_vec(m * n, 5);
    let want = reference(&case, &a, &b, &bias, &slopes, &res);
    let tol = 1e-5 * (k as f32).sqrt().max(1.0) * 4.0;
    for kind in kinds() {
        let got = run(kind, &case, &a, &b, &bias, &slopes, &res);
        for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "{kind:?} m={m} n={n} k={k} act={:?}: at ({}, {}) got {g}, want {w}",
                case.act,
                idx / n,
                idx % n
            );
        }
    }
}

#[test]
fn shapes_hit_every_tail() {
    for m in [1, 2, 5, 6, 7, 11, 12, 13, 14, 23, 24, 25, 37] {
        for n in [1, 3, 4, 5, 7, 8, 9, 12, 13, 15, 16, 17, 20, 24, 28, 31, 32, 33, 48, 64] {
            // K = 9 ends every segment with a partial quad of A values; 8 and 3 test exact quads
            // and a segment shorter than one quad in the lane-indexed (NEON) kernel.
            for k in [9, 8, 3] {
                check(Case {
                    m,
                    n,
                    k,
                    act: Activation::None,
                    bias: false,
                    residual: None,
                    residual2: None,
                    segs: 1,
                });
            }
        }
    }
}

#[test]
fn segmented_k() {
    // Segment lengths that are whole quads, quads plus 1-3, and shorter than a quad (the NEON
    // kernel's partial loads), as a convolution's per-kernel-row or per-tap K layout produces.
    for (segs, seg_len) in [(3, 8), (3, 9), (9, 3), (3, 6), (9, 1), (5, 7), (2, 192)] {
        for (m, n) in [(7, 16), (13, 48), (6, 5), (20, 64), (3, 27)] {
            let k = segs * seg_len;
            check(Case { m, n, k, act: Activation::None, bias: true, residual: None, residual2: None, segs });
        }
    }
}

#[test]
fn neon_panel_widths() {
    // The NEON packing: 16-column panels, and a last panel of the remainder rounded up to 4, 8 or
    // 12 columns; the x86 packings keep their one-vector narrow panel.
    let widths = |level, n| {
        let p = PackedB::pack(level, 2, n, |_, _| 1.0);
        (0..p.panels()).map(|i| p.panel_width(i)).collect::<Vec<_>>()
    };
    assert_eq!(widths(CpuLevel::Neon, 64), [16, 16, 16, 16]);
    assert_eq!(widths(CpuLevel::Neon, 48), [16, 16, 16]);
    assert_eq!(widths(CpuLevel::Neon, 27), [16, 12]);
    assert_eq!(widths(CpuLevel::Neon, 3), [4]);
    assert_eq!(widths(CpuLevel::Neon, 22), [16, 8]);
    assert_eq!(widths(CpuLevel::Avx2, 20), [16, 8]);
    assert_eq!(widths(CpuLevel::Avx2, 27), [16, 16]);
    assert_eq!(widths(CpuLevel::Avx512, 40), [32, 16]);
    assert_eq!(widths(CpuLevel::Avx512, 57), [32, 32]);
    assert_eq!(PackedB::pack(CpuLevel::Neon, 2, 22, |_, _| 1.0).padded_n(), 24);
}

#[test]
fn fma_blockings_agree_bit_for_bit() {
    // Every FMA kernel (AVX2, AVX-512, NEON and the emulated AVX-512 and NEON blockings) sums each
    // output's K terms in order with one fused multiply-add each and runs the same epilogue, so
    // they must agree exactly whatever the register blocking; this is what makes aarch64 outputs
    // identical to x86 ones (tests/cross_arch.rs). The portable level may lack FMA (`wide` on
    // baseline x86-64) and is only within tolerance.
    for (m, n, k, segs, act, residual) in [
        (37, 64, 576, 3, Activation::PRelu, Some(0.2)),
        (13, 48, 27, 3, Activation::LeakyRelu(0.2), None),
        (7, 27, 9, 9, Activation::Relu, Some(1.0)),
    ] {
        let case = Case { m, n, k, act, bias: true, residual, residual2: None, segs };
        let a = rand_vec(m * k, 1);
        let b = rand_vec(k * n, 2);
        let bias = rand_vec(n, 3);
        let slopes = rand_vec(n, 4);
        let res = rand_vec(m * n, 5);
        let fma_kinds = kinds().into_iter().filter(|k| !matches!(k, Kind::Level(CpuLevel::Portable)));
        let outs: Vec<(Kind, Vec<u32>)> = fma_kinds
            .map(|kind| {
                (kind, run(kind, &case, &a, &b, &bias, &slopes, &res).iter().map(|v| v.to_bits()).collect())
            })
            .collect();
        for (kind, out) in &outs[1..] {
            assert!(*out == outs[0].1, "{kind:?} differs from {:?} for m={m} n={n} k={k}", outs[0].0);
        }
    }
}

#[test]
fn epilogues() {
    for act in [Activation::None, Activation::Relu, Activation::LeakyRelu(0.2), Activation::PRelu] {
        for residual in [None, Some(1.0), Some(0.1)] {
            check(Case { m: 29, n: 40, k: 27, act, bias: true, residual, residual2: None, segs: 1 });
        }
        check(Case {
            m: 29,
            n: 40,
            k: 27,
            act,
            bias: true,
            residual: Some(0.2),
            residual2: Some(0.2),
            segs: 1,
        });
    }
}

#[test]
fn large_k() {
    check(Case {
        m: 50,
        n: 64,
        k: 576,
        act: Activation::Relu,
        bias: true,
        residual: Some(0.2),
        residual2: None,
        segs: 1,
    });
}

#[test]
fn panels_swept_in_groups() {
    // K large enough that the packed panels exceed PANEL_GROUP_BYTES together: one panel per
    // group (k = 1800), and groups of several panels with one left over (k = 700, n = 80), with
    // row tails and a narrow last panel.
    for (m, n, k, segs) in [(13, 40, 1800, 3), (19, 80, 700, 1), (7, 90, 700, 2)] {
        check(Case {
            m,
            n,
            k,
            act: Activation::Relu,
            bias: true,
            residual: Some(0.5),
            residual2: None,
            segs,
        });
    }
}

#[test]
fn public_sgemm_matches_reference() {
    for level in CpuLevel::supported() {
        let (m, n, k) = (70, 33, 45);
        let a = rand_vec(m * k, 9);
        let b = rand_vec(k * n, 8);
        let mut want = vec![0.0; m * n];
        reference::sgemm(m, n, k, &a, k, &b, n, &mut want, n);
        let mut got = vec![0.0; m * n];
        sgemm(level, m, n, k, &a, k, &b, n, &mut got, n);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{level}: {g} vs {w}");
        }
    }
}

#[test]
fn packing_from_rows_equals_packing_by_element() {
    for level in [CpuLevel::Portable, CpuLevel::Avx2, CpuLevel::Avx512, CpuLevel::Neon] {
        for (k, n) in [(1, 1), (3, 5), (9, 16), (7, 33), (64, 64), (5, 70)] {
            let src = rand_vec(k * n, (k * 100 + n) as u64);
            let a = PackedB::pack(level, k, n, |kk, c| src[kk * n + c]);
            let b = PackedB::from_rows(level, k, n, &src);
            assert_eq!((a.bytes(), a.panels()), (b.bytes(), b.panels()));
            // SAFETY: both buffers hold bytes() bytes from their first panel's start.
            let (da, db) = unsafe {
                (
                    std::slice::from_raw_parts(a.panel_ptr(0), a.bytes() / 4),
                    std::slice::from_raw_parts(b.panel_ptr(0), b.bytes() / 4),
                )
            };
            assert!(da.iter().zip(db).all(|(x, y)| x.to_bits() == y.to_bits()), "{level} {k}x{n}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn random_shapes(m in 1usize..40, n in 1usize..70, k in 1usize..40, act in 0usize..4, bias: bool, res in 0usize..4) {
        let act = [Activation::None, Activation::Relu, Activation::LeakyRelu(0.1), Activation::PRelu][act];
        let residual = [None, Some(1.0), Some(0.5), Some(0.2)][res];
        let residual2 = (res == 3).then_some(0.2);
        check(Case { m, n, k, act, bias, residual, residual2, segs: 1 });
    }
}
