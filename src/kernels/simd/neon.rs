//! aarch64 Advanced SIMD (NEON): 4 f32 lanes in a `float32x4_t`. NEON is part of the aarch64
//! baseline, so no runtime detection is needed; the token still exists so kernels are written the
//! same way as on x86.

use super::{LaneFma, Simd};
use core::arch::aarch64::*;

/// Token for NEON (always available on aarch64).
#[derive(Clone, Copy, Debug, Default)]
pub struct Neon(());

impl Neon {
    pub fn new() -> Self {
        Neon(())
    }
}

// SAFETY: every aarch64 CPU has NEON (the `neon` target feature is on in the baseline target).
unsafe impl Simd for Neon {
    const LANES: usize = 4;
    type V = float32x4_t;

    #[inline(always)]
    fn zero(self) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vdupq_n_f32(0.0) }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vdupq_n_f32(x) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: float32x4_t) {
        vst1q_f32(p, v)
    }
    #[inline(always)]
    unsafe fn load_part(self, p: *const f32, n: usize) -> float32x4_t {
        debug_assert!(n < 4);
        // Lane loads only touch the n valid floats (a full load could cross into an unmapped page).
        let mut v = vdupq_n_f32(0.0);
        if n > 0 {
            v = vld1q_lane_f32::<0>(p, v);
        }
        if n > 1 {
            v = vld1q_lane_f32::<1>(p.add(1), v);
        }
        if n > 2 {
            v = vld1q_lane_f32::<2>(p.add(2), v);
        }
        v
    }
    #[inline(always)]
    unsafe fn store_part(self, p: *mut f32, v: float32x4_t, n: usize) {
        debug_assert!(n < 4);
        if n > 0 {
            vst1q_lane_f32::<0>(p, v);
        }
        if n > 1 {
            vst1q_lane_f32::<1>(p.add(1), v);
        }
        if n > 2 {
            vst1q_lane_f32::<2>(p.add(2), v);
        }
    }
    #[inline(always)]
    fn fma(self, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64. vfmaq_f32(c, a, b) = c + a * b, fused.
        unsafe { vfmaq_f32(c, a, b) }
    }
    #[inline(always)]
    fn add(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vaddq_f32(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vmulq_f32(a, b) }
    }
    #[inline(always)]
    fn max(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vmaxq_f32(a, b) }
    }
    #[inline(always)]
    unsafe fn transpose(self, src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
        let r: [float32x4_t; 4] = core::array::from_fn(|i| vld1q_f32(src.add(i * ss)));
        // (r0_0 r1_0 r0_2 r1_2), (r0_1 r1_1 r0_3 r1_3), and the same for rows 2, 3.
        let t =
            [vtrn1q_f32(r[0], r[1]), vtrn2q_f32(r[0], r[1]), vtrn1q_f32(r[2], r[3]), vtrn2q_f32(r[2], r[3])];
        let d = |v: float32x4_t| vreinterpretq_f64_f32(v);
        let f = |v: float64x2_t| vreinterpretq_f32_f64(v);
        vst1q_f32(dst, f(vtrn1q_f64(d(t[0]), d(t[2]))));
        vst1q_f32(dst.add(ds), f(vtrn1q_f64(d(t[1]), d(t[3]))));
        vst1q_f32(dst.add(2 * ds), f(vtrn2q_f64(d(t[0]), d(t[2]))));
        vst1q_f32(dst.add(3 * ds), f(vtrn2q_f64(d(t[1]), d(t[3]))));
    }
    #[inline(always)]
    fn min(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vminq_f32(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vsubq_f32(a, b) }
    }
    #[inline(always)]
    fn div(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vdivq_f32(a, b) }
    }
    #[inline(always)]
    fn prefetch(self, p: *const f32) {
        // SAFETY: `prfm` is a hint: it never faults and writes nothing.
        unsafe {
            core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) p, options(nostack, readonly, preserves_flags))
        }
    }
    #[inline(always)]
    fn pow2i(self, n: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64; the conversion saturates (NaN gives 0).
        unsafe { vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)))) }
    }
}

// SAFETY: as above.
unsafe impl LaneFma for Neon {
    #[inline(always)]
    fn fma_lane<const L: i32>(self, b: float32x4_t, a: float32x4_t, acc: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64; L is checked to be in 0..4 at compile time.
        unsafe { vfmaq_laneq_f32::<L>(acc, b, a) }
    }
}
