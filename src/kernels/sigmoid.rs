//! `exp` and the logistic sigmoid in f32, as one sequence of exact vector operations (multiplies,
//! adds, one division, a power of two built in the exponent field) written once over
//! [`Simd`]: every level, and the scalar twin that the references use, give the same bits.
//!
//! The argument is split as `x = n·ln2 + r` with `n` rounded to the nearest integer (Cody-Waite,
//! `ln2` in two parts so `n·ln2_hi` is exact), `e^r` on `|r| <= ln2/2` is `1 + r + r²·P(r)` with
//! Cephes' degree-5 minimax `P`, and `2^n` scales it. The input is clamped to `±87`, where `2^n`
//! stays a normal float; the sigmoid's tails are then `1` and `~1.6e-38` instead of smaller values
//! (differences below 2e-38 absolute). Measured error of [`exp`]: 0.99 ulp at most (test below).

use super::simd::Simd;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5·2^23: adding and subtracting it rounds any |v| < 2^22 to the nearest integer (ties to
/// even) under the default rounding mode, with plain adds.
const ROUND: f32 = 12_582_912.0;
const LN2_HI: f32 = 0.693_359_375;
const LN2_LO: f32 = -2.121_944_4e-4;
const P: [f32; 6] =
    [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1];
const LIMIT: f32 = 87.0;

/// `e^x` (the scalar twin of [`exp_v`]: same operations, same bits).
#[inline]
pub fn exp(x: f32) -> f32 {
    let x = x.max(-LIMIT).min(LIMIT);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut y = P[0];
    for p in &P[1..] {
        y = y * r + p;
    }
    let e = (y * (r * r) + r) + 1.0;
    e * super::simd::portable::pow2i(n)
}

/// `1 / (1 + e^-x)`: the scalar twin of [`sigmoid_v`].
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(0.0 - x))
}

/// [`exp`] on every lane.
#[inline(always)]
pub fn exp_v<S: Simd>(s: S, x: S::V) -> S::V {
    // `max` first, as the scalar `f32::max` does: x86 `max(NaN, -87)` is -87 there too.
    let x = s.min(s.max(x, s.splat(-LIMIT)), s.splat(LIMIT));
    let round = s.splat(ROUND);
    let n = s.sub(s.add(s.mul(x, s.splat(LOG2E)), round), round);
    let r = s.sub(s.sub(x, s.mul(n, s.splat(LN2_HI))), s.mul(n, s.splat(LN2_LO)));
    let mut y = s.splat(P[0]);
    for p in &P[1..] {
        y = s.add(s.mul(y, r), s.splat(*p));
    }
    let e = s.add(s.add(s.mul(y, s.mul(r, r)), r), s.splat(1.0));
    s.mul(e, s.pow2i(n))
}

/// [`sigmoid`] on every lane.
#[inline(always)]
pub fn sigmoid_v<S: Simd>(s: S, x: S::V) -> S::V {
    let one = s.splat(1.0);
    s.div(one, s.add(one, exp_v(s, s.sub(s.zero(), x))))
}

/// `dst[i] = sigmoid(src[i])` for `i < n`.
///
/// # Safety
/// `src` valid for `n` reads and `dst` for `n` writes.
#[inline(always)]
pub unsafe fn sigmoid_slice<S: Simd>(s: S, src: *const f32, dst: *mut f32, n: usize) {
    map_slice::<S, true>(s, src, dst, n)
}

/// `dst[i] = f(src[i])` for `i < n`, `f` the sigmoid (`SIG`) or `exp`: a const parameter rather
/// than a closure, which would not be compiled with the caller's target features.
///
/// # Safety
/// As [`sigmoid_slice`].
#[inline(always)]
unsafe fn map_slice<S: Simd, const SIG: bool>(s: S, src: *const f32, dst: *mut f32, n: usize) {
    let mut i = 0;
    while i + S::LANES <= n {
        s.store(dst.add(i), apply::<S, SIG>(s, s.load(src.add(i))));
        i += S::LANES;
    }
    if i < n {
        s.store_part(dst.add(i), apply::<S, SIG>(s, s.load_part(src.add(i), n - i)), n - i);
    }
}

#[inline(always)]
fn apply<S: Simd, const SIG: bool>(s: S, v: S::V) -> S::V {
    if SIG {
        sigmoid_v(s, v)
    } else {
        exp_v(s, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuLevel;
    use crate::kernels::simd::emu::{Emu16, Emu4};
    use crate::kernels::simd::simd_dispatch;
    use crate::kernels::testutil::rand_vec;

    #[inline(always)]
    unsafe fn both_body<S: Simd>(s: S, x: *const f32, e: *mut f32, sg: *mut f32, n: usize) {
        map_slice::<S, false>(s, x, e, n);
        sigmoid_slice(s, x, sg, n);
    }

    simd_dispatch! {
        /// # Safety
        /// `x` valid for `n` reads, `e` and `sg` for `n` writes.
        fn both(x: *const f32, e: *mut f32, sg: *mut f32, n: usize) = both_body;
    }

    /// Every float of interest: a sweep over the whole clamped range and beyond, the clamp
    /// points, zeros, infinities, values near rounding ties of `n`.
    fn inputs(n: usize) -> Vec<f32> {
        let mut v = rand_vec(n, 5, 100.0);
        v.extend([0.0, -0.0, 87.0, -87.0, 88.0, -88.0, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY]);
        v.extend((0..64).map(|k| (k as f32 - 32.0 + 0.5) * std::f32::consts::LN_2));
        v.extend((0..200).map(|k| (k as f32 - 100.0) * 0.013));
        v
    }

    #[test]
    fn every_level_gives_the_scalar_bits() {
        // Lengths that leave tails on every lane count, down to a single value.
        for n in [1usize, 3, 7, 8, 13, 16, 33] {
            let x: Vec<f32> = inputs(600).into_iter().take(n.max(1) * 17).collect();
            let want_e: Vec<u32> = x.iter().map(|v| exp(*v).to_bits()).collect();
            let want_s: Vec<u32> = x.iter().map(|v| sigmoid(*v).to_bits()).collect();
            let len = x.len();
            let check = |name: &str, e: &[f32], sg: &[f32]| {
                for i in 0..len {
                    assert_eq!(
                        e[i].to_bits(),
                        want_e[i],
                        "{name} exp({}) = {} want {}",
                        x[i],
                        e[i],
                        exp(x[i])
                    );
                    assert_eq!(sg[i].to_bits(), want_s[i], "{name} sigmoid({})", x[i]);
                }
            };
            for level in CpuLevel::supported() {
                let (mut e, mut sg) = (vec![0.0; len], vec![0.0; len]);
                // SAFETY: buffers of `len` floats each.
                unsafe { both(level, x.as_ptr(), e.as_mut_ptr(), sg.as_mut_ptr(), len) };
                check(&format!("{level}"), &e, &sg);
            }
            for (name, lanes) in [("emu16", 16), ("emu4", 4)] {
                let (mut e, mut sg) = (vec![0.0; len], vec![0.0; len]);
                // SAFETY: as above; the emulated levels are plain Rust.
                unsafe {
                    if lanes == 16 {
                        both_body(Emu16::default(), x.as_ptr(), e.as_mut_ptr(), sg.as_mut_ptr(), len);
                    } else {
                        both_body(Emu4::default(), x.as_ptr(), e.as_mut_ptr(), sg.as_mut_ptr(), len);
                    }
                }
                check(name, &e, &sg);
            }
        }
    }

    #[test]
    fn exp_is_within_one_and_a_half_ulp_and_sigmoid_within_three() {
        let ulp = |x: f64| {
            let f = x as f32;
            (f32::from_bits(f.to_bits() + 1) - f) as f64
        };
        let mut worst = (0.0f64, 0.0f32);
        let mut x = -87.0f32;
        while x <= 87.0 {
            let want = (x as f64).exp();
            let err = (exp(x) as f64 - want).abs() / ulp(want);
            if err > worst.0 {
                worst = (err, x);
            }
            let s = sigmoid(x) as f64;
            let sw = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((s - sw).abs() <= 3.0 * ulp(sw), "sigmoid({x}) = {s}, want {sw}");
            x += 0.000_731;
        }
        eprintln!("exp: worst error {:.3} ulp at {}", worst.0, worst.1);
        assert!(worst.0 <= 1.5, "exp error {} ulp at {}", worst.0, worst.1);
        // The tails: saturated, finite, ordered.
        assert_eq!(sigmoid(200.0), 1.0);
        assert!(sigmoid(-200.0) >= 0.0 && sigmoid(-200.0) < 2e-38);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert!(sigmoid(f32::NEG_INFINITY) < 2e-38);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn nan_logits_neither_panic_nor_leave_the_unit_interval() {
        // A corrupt checkpoint can put NaN into a mask logit: levels may differ on it (x86 `max`
        // drops the NaN, NEON keeps it), but none may panic or produce a value outside [0, 1].
        let x = [f32::NAN, -f32::NAN, 1.0, f32::NAN, 0.5, f32::NAN, 2.0, 3.0, f32::NAN];
        let ok = |v: f32| v.is_nan() || (0.0..=1.0).contains(&v);
        assert!(ok(sigmoid(f32::NAN)));
        for level in CpuLevel::supported() {
            let (mut e, mut sg) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            // SAFETY: buffers of `x.len()` floats each.
            unsafe { both(level, x.as_ptr(), e.as_mut_ptr(), sg.as_mut_ptr(), x.len()) };
            assert!(sg.iter().all(|v| ok(*v)), "{level}: {sg:?}");
        }
    }
}
