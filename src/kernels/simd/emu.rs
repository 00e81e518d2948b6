//! Vectors of N lanes emulated with arrays and fused `f32::mul_add`, for tests only: they run the
//! register blockings of levels the host may lack (16 lanes for AVX-512, 4 lanes with lane-indexed
//! FMA for NEON) on any machine, so the blocking and tail logic of every level is checked by the
//! x86 CI too.

use super::{LaneFma, Simd};

#[derive(Clone, Copy, Debug, Default)]
pub struct Emu<const N: usize>;

/// The AVX-512 geometry.
pub type Emu16 = Emu<16>;
/// The NEON geometry.
pub type Emu4 = Emu<4>;

// SAFETY: plain Rust, no special instructions.
unsafe impl<const N: usize> Simd for Emu<N> {
    const LANES: usize = N;
    type V = [f32; N];

    fn zero(self) -> [f32; N] {
        [0.0; N]
    }
    fn splat(self, x: f32) -> [f32; N] {
        [x; N]
    }
    unsafe fn load(self, p: *const f32) -> [f32; N] {
        (p as *const [f32; N]).read_unaligned()
    }
    unsafe fn store(self, p: *mut f32, v: [f32; N]) {
        (p as *mut [f32; N]).write_unaligned(v)
    }
    unsafe fn load_part(self, p: *const f32, n: usize) -> [f32; N] {
        let mut a = [0.0; N];
        core::ptr::copy_nonoverlapping(p, a.as_mut_ptr(), n);
        a
    }
    unsafe fn store_part(self, p: *mut f32, v: [f32; N], n: usize) {
        core::ptr::copy_nonoverlapping(v.as_ptr(), p, n)
    }
    fn fma(self, a: [f32; N], b: [f32; N], c: [f32; N]) -> [f32; N] {
        core::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }
    fn add(self, a: [f32; N], b: [f32; N]) -> [f32; N] {
        core::array::from_fn(|i| a[i] + b[i])
    }
    fn mul(self, a: [f32; N], b: [f32; N]) -> [f32; N] {
        core::array::from_fn(|i| a[i] * b[i])
    }
    fn max(self, a: [f32; N], b: [f32; N]) -> [f32; N] {
        core::array::from_fn(|i| a[i].max(b[i]))
    }
    fn min(self, a: [f32; N], b: [f32; N]) -> [f32; N] {
        core::array::from_fn(|i| a[i].min(b[i]))
    }
    fn sub(self, a: [f32; N], b: [f32; N]) -> [f32; N] {
        core::array::from_fn(|i| a[i] - b[i])
    }
    fn div(self, a: [f32; N], b: [f32; N]) -> [f32; N] {
        core::array::from_fn(|i| a[i] / b[i])
    }
    fn pow2i(self, n: [f32; N]) -> [f32; N] {
        n.map(super::portable::pow2i)
    }
}

// SAFETY: plain Rust.
unsafe impl LaneFma for Emu<4> {
    fn fma_lane<const L: i32>(self, b: [f32; 4], a: [f32; 4], acc: [f32; 4]) -> [f32; 4] {
        let x = a[L as usize];
        core::array::from_fn(|i| b[i].mul_add(x, acc[i]))
    }
}
