//! A small vector vocabulary that every hot kernel is written against once, then instantiated per
//! CPU level inside a `#[target_feature]` shim (the matrixmultiply / gemm idiom). Each level is a
//! zero-sized token type; holding a token proves the CPU supports that level, which is what makes
//! the `unsafe` intrinsics in its methods sound.

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(test)]
pub mod emu;
pub mod portable;

/// Vector operations on f32 lanes. All methods are `#[inline(always)]` in every implementation so
/// they melt into the `#[target_feature]` function that instantiates the generic kernel.
///
/// # Safety
/// Implementations may only be constructed when the CPU supports their instructions. Pointer
/// arguments must be valid for `LANES` (or `n`) f32 reads or writes; alignment is not required.
pub unsafe trait Simd: Copy + Send + Sync + 'static {
    const LANES: usize;
    type V: Copy;

    fn zero(self) -> Self::V;
    fn splat(self, x: f32) -> Self::V;
    /// # Safety
    /// `p` must be valid for `LANES` reads.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// # Safety
    /// `p` must be valid for `LANES` writes.
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// Load the first `n < LANES` floats; the other lanes are zero.
    /// # Safety
    /// `p` must be valid for `n` reads.
    unsafe fn load_part(self, p: *const f32, n: usize) -> Self::V;
    /// Store the first `n < LANES` lanes.
    /// # Safety
    /// `p` must be valid for `n` writes.
    unsafe fn store_part(self, p: *mut f32, v: Self::V, n: usize);
    /// `a * b + c` (fused where the level has FMA).
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
}
