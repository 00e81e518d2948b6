use super::*;
use crate::kernels::conv::{reference, ConvSpec};
use crate::kernels::simd::emu::Emu16;
use crate::kernels::testutil::{act_ref, rand_vec};
use crate::tensor::Tensor;

fn round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| from_bf16(to_bf16(x))).collect()
}

#[test]
fn rounding_is_to_nearest_even() {
    assert_eq!(to_bf16(1.0), 0x3f80);
    assert_eq!(to_bf16(-2.0), 0xc000);
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to the even one, 1.
    assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
    // 1 + 3·2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up.
    assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
    assert_eq!(to_bf16(1.0 + 1.0 / 256.0 + 1.0 / 65536.0), 0x3f81);
    assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
    assert_eq!(to_bf16(f32::MAX), 0x7f80, "overflow rounds to infinity");
    assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    for x in rand_vec(1000, 7, 100.0) {
        let r = from_bf16(to_bf16(x));
        assert!((r - x).abs() <= x.abs() / 256.0, "{x} -> {r}");
    }
}

/// Run a bf16 convolution at `level` (epilogue) with `unit`, optionally with a residual, and
/// return the output as HWC.
#[allow(clippy::too_many_arguments)]
fn run(
    level: CpuLevel,
    unit: TileUnit,
    emu16: bool,
    spec: &ConvSpec,
    x: &Tensor,
    wt: &[f32],
    bias: &[f32],
    act: Activation,
    slopes: Option<&[f32]>,
    res: Option<&Tensor>,
) -> Vec<f32> {
    let conv = Bf16Conv::with_unit(level, unit, spec, wt, Some(bias), slopes);
    let (h, w) = (x.layout.h, x.layout.w);
    let mut y = Tensor::zeros(h, w, spec.cout, 1);
    let yl = y.layout;
    let r = res.map(|r| (r.data.as_ptr(), &r.layout, 0.5f32));
    // SAFETY: the tensors own buffers of their layouts; the geometry is asserted inside.
    unsafe {
        let (xp, yp) = (x.data.as_ptr(), y.data.as_mut_ptr());
        if emu16 {
            conv.run_impl(xp, &x.layout, yp, &yl, act, r, None, &|job, blocks| {
                job_body(Emu16::default(), job, blocks)
            });
        } else {
            conv.run_raw(xp, &x.layout, yp, &yl, act, r, None);
        }
    }
    y.to_hwc()
}

/// The emulated tile unit against a float64 direct convolution of the bf16-rounded operands:
/// shapes with partial 16-pixel groups, an odd number of groups, 1-pixel images, channels that
/// are not whole steps or tiles; every epilogue; every CPU level of the host and 16-lane vectors.
#[test]
fn emulated_tiles_match_the_rounded_direct_sum() {
    let shapes = [
        (1, 1, 16, 16, 3),
        (1, 1, 32, 16, 1),
        (3, 5, 16, 16, 3),
        (2, 17, 40, 24, 3),
        (4, 33, 64, 48, 3),
        (3, 16, 32, 64, 1),
        (5, 7, 48, 32, 5),
    ];
    let acts = [Activation::None, Activation::Relu, Activation::LeakyRelu(0.2), Activation::PRelu];
    for (i, &(h, w, cin, cout, k)) in shapes.iter().enumerate() {
        let spec = ConvSpec::same(cin, cout, k);
        let xs = rand_vec(h * w * cin, 1 + i as u64, 1.0);
        let wt = rand_vec(cout * cin * k * k, 100 + i as u64, 0.2);
        let bias = rand_vec(cout, 200 + i as u64, 0.5);
        let slopes = rand_vec(cout, 300 + i as u64, 0.3);
        let resv = rand_vec(h * w * cout, 400 + i as u64, 1.0);
        let x = Tensor::from_hwc(h, w, cin, k / 2, &xs);
        let rt = Tensor::from_hwc(h, w, cout, 0, &resv);
        let want_conv = reference(&round(&xs), h, w, &spec, &round(&wt), Some(&bias));
        let act = acts[i % acts.len()];
        let residual = i % 2 == 1;
        let want: Vec<f32> = want_conv
            .iter()
            .enumerate()
            .map(|(j, &v)| {
                let a = act_ref(v, act, slopes[j % cout]);
                if residual {
                    resv[j] + 0.5 * a
                } else {
                    a
                }
            })
            .collect();
        let sl = (act == Activation::PRelu).then_some(&slopes[..]);
        let res = residual.then_some(&rt);
        let mut runs: Vec<(String, Vec<f32>)> = CpuLevel::supported()
            .into_iter()
            .map(|l| (l.to_string(), run(l, TileUnit::Emulated, false, &spec, &x, &wt, &bias, act, sl, res)))
            .collect();
        runs.push((
            "emu16".into(),
            run(CpuLevel::Portable, TileUnit::Emulated, true, &spec, &x, &wt, &bias, act, sl, res),
        ));
        for (name, got) in runs {
            assert_eq!(got.len(), want.len());
            for (j, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!((g - e).abs() <= 2e-5 * (1.0 + e.abs()), "{name} {spec:?} {h}x{w} [{j}]: {g} vs {e}");
            }
        }
    }
}

/// The error against the fp32 convolution is the operands' rounding: for unit-scale random data,
/// far below the 8-bit output step, far above fp32's.
#[test]
fn error_against_fp32_is_that_of_bf16_operands() {
    let (h, w, cin, cout) = (6, 21, 64, 64);
    let spec = ConvSpec::same(cin, cout, 3);
    let xs = rand_vec(h * w * cin, 11, 1.0);
    let wt = rand_vec(cout * cin * 9, 12, 1.0 / 24.0);
    let bias = vec![0.0; cout];
    let x = Tensor::from_hwc(h, w, cin, 1, &xs);
    let got = run(
        CpuLevel::Portable,
        TileUnit::Emulated,
        false,
        &spec,
        &x,
        &wt,
        &bias,
        Activation::None,
        None,
        None,
    );
    let want = reference(&xs, h, w, &spec, &wt, None);
    let rms = |v: &mut dyn Iterator<Item = f64>| {
        let (s, n) = v.fold((0.0, 0), |(s, n), e| (s + e * e, n + 1));
        (s / n as f64).sqrt()
    };
    let err = rms(&mut got.iter().zip(&want).map(|(g, e)| (g - e) as f64));
    let mag = rms(&mut want.iter().map(|&e| e as f64));
    // Two operands rounded to 8 significant bits: a relative error per product of about
    // 2·2^-9/√3, averaged over 576 products of random signs.
    assert!(err / mag < 4e-3 && err / mag > 1e-4, "relative RMS error {}", err / mag);
}

/// Outputs depend only on their neighbourhood: a crop with its real border gives the same bits.
#[test]
fn crops_give_the_same_bits() {
    let (h, w, cin, cout) = (9, 40, 32, 32);
    let spec = ConvSpec::same(cin, cout, 3);
    let xs = rand_vec(h * w * cin, 21, 1.0);
    let wt = rand_vec(cout * cin * 9, 22, 0.1);
    let bias = rand_vec(cout, 23, 0.1);
    let full = run(
        CpuLevel::Portable,
        TileUnit::Emulated,
        false,
        &spec,
        &Tensor::from_hwc(h, w, cin, 1, &xs),
        &wt,
        &bias,
        Activation::Relu,
        None,
        None,
    );
    // Rows 2..7, columns 5..28, with the neighbouring pixels as the border.
    let (y0, x0, ch, cw) = (2, 5, 5, 23);
    let mut crop = Tensor::zeros(ch, cw, cin, 1);
    let cl = crop.layout;
    for y in -1..=ch as isize {
        for x in -1..=cw as isize {
            let src = (((y0 as isize + y) as usize) * w + (x0 as isize + x) as usize) * cin;
            let dst = cl.offset(y, x) as usize;
            crop.data.as_mut_slice()[dst..dst + cin].copy_from_slice(&xs[src..src + cin]);
        }
    }
    let part = run(
        CpuLevel::Portable,
        TileUnit::Emulated,
        false,
        &spec,
        &crop,
        &wt,
        &bias,
        Activation::Relu,
        None,
        None,
    );
    for y in 0..ch {
        for x in 0..cw {
            for c in 0..cout {
                let a = part[(y * cw + x) * cout + c];
                let b = full[((y0 + y) * w + x0 + x) * cout + c];
                assert_eq!(a.to_bits(), b.to_bits(), "({y}, {x}, {c})");
            }
        }
    }
}

/// The AMX unit against the emulation: the same sums in the same order.
#[test]
fn amx_matches_the_emulation() {
    if !amx_available(CpuLevel::effective()) {
        eprintln!("skipped: no AMX-BF16 here (or SUPERRES_CPU below avx512)");
        return;
    }
    let level = CpuLevel::Avx512;
    for (i, &(h, w, cin, cout, k)) in
        [(1, 1, 16, 16, 3), (3, 17, 40, 24, 3), (7, 45, 64, 64, 3), (4, 20, 96, 32, 1), (2, 9, 64, 144, 3)]
            .iter()
            .enumerate()
    {
        let spec = ConvSpec::same(cin, cout, k);
        let xs = rand_vec(h * w * cin, 31 + i as u64, 1.0);
        let wt = rand_vec(cout * cin * k * k, 32 + i as u64, 0.1);
        let bias = rand_vec(cout, 33 + i as u64, 0.1);
        let x = Tensor::from_hwc(h, w, cin, k / 2, &xs);
        let args = (&spec, &x, &wt, &bias, Activation::LeakyRelu(0.2), None, None);
        let emu =
            run(level, TileUnit::Emulated, false, args.0, args.1, args.2, args.3, args.4, args.5, args.6);
        let amx = run(level, TileUnit::Amx, false, args.0, args.1, args.2, args.3, args.4, args.5, args.6);
        let mut worst = 0f32;
        for (a, e) in amx.iter().zip(&emu) {
            worst = worst.max((a - e).abs() / (1.0 + e.abs()));
        }
        let exact = amx.iter().zip(&emu).filter(|(a, e)| a.to_bits() == e.to_bits()).count();
        eprintln!(
            "{spec:?} {h}x{w}: {exact}/{} bit-identical, worst relative difference {worst:e}",
            amx.len()
        );
        assert!(worst <= 1e-6, "{spec:?}: AMX and emulation differ by {worst}");
    }
}

/// The AVX512-BF16 conversion against the scalar rounding, with tails of every length.
#[test]
fn vector_conversion_matches_scalar() {
    if !amx_available(CpuLevel::effective()) {
        eprintln!("skipped: no AMX-BF16 here (or SUPERRES_CPU below avx512)");
        return;
    }
    for cin in [1usize, 15, 16, 17, 33, 64] {
        let cin_p = cin.next_multiple_of(KC);
        let xs = 37;
        let src: Vec<f32> = rand_vec(5 * xs, cin as u64, 3.0);
        let (mut a, mut b) = (vec![1u16; 5 * cin_p], vec![2u16; 5 * cin_p]);
        // SAFETY: 5 pixels of `xs >= cin` floats in, 5·cin_p values out.
        unsafe {
            convert(TileUnit::Amx, src.as_ptr(), xs, cin, 5, a.as_mut_ptr(), cin_p);
            convert_scalar(src.as_ptr(), xs, cin, 5, b.as_mut_ptr(), cin_p);
        }
        assert_eq!(a, b, "cin {cin}");
    }
}
