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
    unsafe fn transpose(self, src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
        transpose8(src, ss, dst, ds)
    }
    #[inline(always)]
    fn min(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: the token proves AVX support.
        unsafe { _mm256_min_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: the token proves AVX support.
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: the token proves AVX support.
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    fn prefetch(self, p: *const f32) {
        // SAFETY: a prefetch never faults, whatever the address; SSE is baseline on x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
    }
    #[inline(always)]
    fn pow2i(self, n: __m256) -> __m256 {
        // SAFETY: the token proves AVX2 support (integer add and shift on 256 bits).
        unsafe {
            let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e))
        }
    }
}

/// The 8x8 transpose of [`Simd::transpose`]: pairs interleaved, then quads, then 128-bit halves
/// (24 shuffles for 64 floats instead of 64 scalar moves).
///
/// # Safety
/// As [`Simd::transpose`] with 8 lanes, and only called where AVX is enabled.
#[inline(always)]
pub(super) unsafe fn transpose8(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    // Written out rather than with `array::from_fn`: closures are not compiled with the
    // caller's target features, and the intrinsics then stay calls.
    let (r0, r1) = (_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(ss)));
    let (r2, r3) = (_mm256_loadu_ps(src.add(2 * ss)), _mm256_loadu_ps(src.add(3 * ss)));
    let (r4, r5) = (_mm256_loadu_ps(src.add(4 * ss)), _mm256_loadu_ps(src.add(5 * ss)));
    let (r6, r7) = (_mm256_loadu_ps(src.add(6 * ss)), _mm256_loadu_ps(src.add(7 * ss)));
    // (x0 y0 x1 y1 | x4 y4 x5 y5) and (x2 y2 x3 y3 | x6 y6 x7 y7) for row pairs.
    let (a0, a1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
    let (a2, a3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
    let (a4, a5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
    let (a6, a7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
    // Columns k | k + 4 of rows 0..4 (b0..b3) and rows 4..8 (b4..b7).
    let b0 = _mm256_shuffle_ps::<0x44>(a0, a2);
    let b1 = _mm256_shuffle_ps::<0xEE>(a0, a2);
    let b2 = _mm256_shuffle_ps::<0x44>(a1, a3);
    let b3 = _mm256_shuffle_ps::<0xEE>(a1, a3);
    let b4 = _mm256_shuffle_ps::<0x44>(a4, a6);
    let b5 = _mm256_shuffle_ps::<0xEE>(a4, a6);
    let b6 = _mm256_shuffle_ps::<0x44>(a5, a7);
    let b7 = _mm256_shuffle_ps::<0xEE>(a5, a7);
    for (k, lo, hi) in [(0, b0, b4), (1, b1, b5), (2, b2, b6), (3, b3, b7)] {
        _mm256_storeu_ps(dst.add(k * ds), _mm256_permute2f128_ps::<0x20>(lo, hi));
        _mm256_storeu_ps(dst.add((k + 4) * ds), _mm256_permute2f128_ps::<0x31>(lo, hi));
    }
}
