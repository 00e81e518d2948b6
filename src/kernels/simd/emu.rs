//! A 16-lane vector emulated with arrays and fused `f32::mul_add`, for tests only: it runs the
//! AVX-512 kernel shapes (16 lanes, the same register blocking and tails) on any machine, so the
//! blocking logic of that level is checked even where the CPU lacks AVX-512.

use super::Simd;

#[derive(Clone, Copy, Debug, Default)]
pub struct Emu16;

// SAFETY: plain Rust, no special instructions.
unsafe impl Simd for Emu16 {
    const LANES: usize = 16;
    type V = [f32; 16];

    fn zero(self) -> [f32; 16] {
        [0.0; 16]
    }
    fn splat(self, x: f32) -> [f32; 16] {
        [x; 16]
    }
    unsafe fn load(self, p: *const f32) -> [f32; 16] {
        (p as *const [f32; 16]).read_unaligned()
    }
    unsafe fn store(self, p: *mut f32, v: [f32; 16]) {
        (p as *mut [f32; 16]).write_unaligned(v)
    }
    unsafe fn load_part(self, p: *const f32, n: usize) -> [f32; 16] {
        let mut a = [0.0; 16];
        core::ptr::copy_nonoverlapping(p, a.as_mut_ptr(), n);
        a
    }
    unsafe fn store_part(self, p: *mut f32, v: [f32; 16], n: usize) {
        core::ptr::copy_nonoverlapping(v.as_ptr(), p, n)
    }
    fn fma(self, a: [f32; 16], b: [f32; 16], c: [f32; 16]) -> [f32; 16] {
        core::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }
    fn add(self, a: [f32; 16], b: [f32; 16]) -> [f32; 16] {
        core::array::from_fn(|i| a[i] + b[i])
    }
    fn mul(self, a: [f32; 16], b: [f32; 16]) -> [f32; 16] {
        core::array::from_fn(|i| a[i] * b[i])
    }
    fn max(self, a: [f32; 16], b: [f32; 16]) -> [f32; 16] {
        core::array::from_fn(|i| a[i].max(b[i]))
    }
    fn min(self, a: [f32; 16], b: [f32; 16]) -> [f32; 16] {
        core::array::from_fn(|i| a[i].min(b[i]))
    }
}
