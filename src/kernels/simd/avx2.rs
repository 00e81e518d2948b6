//! AVX2 + FMA: 8 f32 lanes in a `__m256`.

use super::Simd;
use core::arch::x86_64::*;

/// Token proving AVX2 and FMA are available.
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx2 {
    pub fn new() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2(()))
    }

    /// # Safety
    /// The caller must have checked AVX2 and FMA support (for instance by being a
    /// `#[target_feature(enable = "avx2,fma")]` function reached only after detection).
    pub unsafe fn new_unchecked() -> Self {
        Avx2(())
    }
}

#[inline(always)]
fn mask(n: usize) -> __m256i {
    const M: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    debug_assert!(n <= 8);
    // SAFETY: 8 - n is in 0..=8, so the 8-lane read stays inside M; AVX is implied by the token.
    unsafe { _mm256_loadu_si256(M.as_ptr().add(8 - n) as *const __m256i) }
}

// SAFETY: an `Avx2` token exists only where AVX2 and FMA were detected.
unsafe impl Simd for Avx2 {
    const LANES: usize = 8;
    type V = __m256;

    #[inline(always)]
    fn zero(self) -> __m256 {
        // SAFETY: the token proves AVX support.
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY: the token proves AVX support.
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_part(self, p: *const f32, n: usize) -> __m256 {
        _mm256_maskload_ps(p, mask(n))
    }
    #[inline(always)]
    unsafe fn store_part(self, p: *mut f32, v: __m256, n: usize) {
        _mm256_maskstore_ps(p, mask(n), v)
    }
    #[inline(always)]
    fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: the token proves FMA support.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: the token proves AVX support.
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: the token proves AVX support.
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: the token proves AVX support.
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: the token proves AVX support.
        unsafe { _mm256_min_ps(a, b) }
    }
}
