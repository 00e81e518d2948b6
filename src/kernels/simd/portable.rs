//! The portable level: `wide::f32x8`, whose backend is chosen when the crate is compiled (SSE2 on a
//! baseline x86-64 build, NEON on aarch64, scalar elsewhere). It needs no runtime detection.

use super::Simd;
use wide::f32x8;

#[derive(Clone, Copy, Debug, Default)]
pub struct Portable;

// SAFETY: `wide` only uses instructions of the compilation target's baseline.
unsafe impl Simd for Portable {
    const LANES: usize = 8;
    type V = f32x8;

    #[inline(always)]
    fn zero(self) -> f32x8 {
        f32x8::ZERO
    }
    #[inline(always)]
    fn splat(self, x: f32) -> f32x8 {
        f32x8::splat(x)
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> f32x8 {
        f32x8::from((p as *const [f32; 8]).read_unaligned())
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: f32x8) {
        (p as *mut [f32; 8]).write_unaligned(v.to_array())
    }
    #[inline(always)]
    unsafe fn load_part(self, p: *const f32, n: usize) -> f32x8 {
        let mut a = [0.0f32; 8];
        core::ptr::copy_nonoverlapping(p, a.as_mut_ptr(), n);
        f32x8::from(a)
    }
    #[inline(always)]
    unsafe fn store_part(self, p: *mut f32, v: f32x8, n: usize) {
        core::ptr::copy_nonoverlapping(v.to_array().as_ptr(), p, n)
    }
    #[inline(always)]
    fn fma(self, a: f32x8, b: f32x8, c: f32x8) -> f32x8 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn add(self, a: f32x8, b: f32x8) -> f32x8 {
        a + b
    }
    #[inline(always)]
    fn mul(self, a: f32x8, b: f32x8) -> f32x8 {
        a * b
    }
    #[inline(always)]
    fn max(self, a: f32x8, b: f32x8) -> f32x8 {
        a.max(b)
    }
    #[inline(always)]
    fn min(self, a: f32x8, b: f32x8) -> f32x8 {
        a.min(b)
    }
    #[inline(always)]
    fn sub(self, a: f32x8, b: f32x8) -> f32x8 {
        a - b
    }
    #[inline(always)]
    fn div(self, a: f32x8, b: f32x8) -> f32x8 {
        a / b
    }
    #[inline(always)]
    fn pow2i(self, n: f32x8) -> f32x8 {
        f32x8::from(n.to_array().map(pow2i))
    }
}

/// `2^n` for integral `n` in `-126..=127` (the scalar [`Simd::pow2i`]); `as` saturates, so other
/// values give some float and never overflow the shift.
#[inline(always)]
pub(crate) fn pow2i(n: f32) -> f32 {
    f32::from_bits(((n as i32).wrapping_add(127) as u32) << 23)
}
