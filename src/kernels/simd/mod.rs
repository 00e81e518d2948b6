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
#[cfg(target_arch = "aarch64")]
pub mod neon;
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
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    /// IEEE division (correctly rounded on every level).
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// `2^n` for lanes holding an integral `n` in `-126..=127`, built in the exponent field (exact).
    /// Other values give unspecified lanes, never undefined behaviour.
    fn pow2i(self, n: Self::V) -> Self::V;
    /// Hint that the cache line holding `p` will be read soon (into L1). No effect on results; a
    /// no-op where the level has no prefetch instruction. Any address is allowed.
    #[inline(always)]
    fn prefetch(self, p: *const f32) {
        let _ = p;
    }
    /// Prefetch the cache lines of `n > 0` floats from `p` (any address, as [`Simd::prefetch`]).
    #[inline(always)]
    fn prefetch_floats(self, p: *const f32, n: usize) {
        let mut c = 0;
        while c < n {
            self.prefetch(p.wrapping_add(c));
            c += 16;
        }
        self.prefetch(p.wrapping_add(n - 1));
    }
    /// Transpose a `LANES`x`LANES` block: row `r` (`LANES` floats at `src + r·ss`) becomes
    /// column `r` of the rows at `dst + c·ds`. Pure data movement. This default is the scalar
    /// reference; levels with shuffles override it.
    /// # Safety
    /// `src + r·ss` valid for `LANES` reads and `dst + r·ds` for `LANES` writes, `r < LANES`;
    /// the two blocks do not overlap.
    #[inline(always)]
    unsafe fn transpose(self, src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
        for r in 0..Self::LANES {
            for c in 0..Self::LANES {
                *dst.add(c * ds + r) = *src.add(r * ss + c);
            }
        }
    }
}

/// Define `unsafe fn $name(level: CpuLevel, args..) -> R` that runs the generic (unsafe) body
/// `$body::<S>(token, args..)` compiled for `level` inside a `#[target_feature]` shim (so the
/// generic code is vectorised for that level), the way the GEMM levels are instantiated. Its
/// safety contract is the body's. Panics if `level` is not supported by this CPU (that would make
/// the shim unsound).
macro_rules! simd_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:ident;) => {
        $(#[$m])*
        $vis unsafe fn $name(level: $crate::cpu::CpuLevel, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                $body($crate::kernels::simd::avx512::Avx512::new_unchecked(), $($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                $body($crate::kernels::simd::avx2::Avx2::new_unchecked(), $($arg),*)
            }
            assert!(level.is_supported(), "CPU level {level} is not supported here");
            match level {
                // SAFETY: NEON is baseline on aarch64; the rest is the caller's contract.
                #[cfg(target_arch = "aarch64")]
                $crate::cpu::CpuLevel::Neon => unsafe { $body($crate::kernels::simd::neon::Neon::new(), $($arg),*) },
                // SAFETY: the level was checked to be supported just above.
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::CpuLevel::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::CpuLevel::Avx2 => unsafe { avx2($($arg),*) },
                // SAFETY: the portable level needs no CPU feature; the rest is the caller's contract.
                _ => unsafe { $body($crate::kernels::simd::portable::Portable, $($arg),*) },
            }
        }
    };
}
pub(crate) use simd_dispatch;

/// 4-lane vectors that multiply-add by one lane of another vector (`fmla v.4s, v.4s, v.s[L]` on
/// aarch64): a GEMM microkernel can then load four consecutive K values of an A row in one vector
/// and use them lane by lane, instead of broadcasting every A value from memory.
///
/// # Safety
/// As [`Simd`]; `LANES` must be 4.
pub unsafe trait LaneFma: Simd {
    /// `acc + b * a[L]`, fused, for `L` in `0..4`.
    fn fma_lane<const L: i32>(self, b: Self::V, a: Self::V, acc: Self::V) -> Self::V;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuLevel;

    #[inline(always)]
    unsafe fn transpose_body<S: Simd>(s: S, src: *const f32, ss: usize, dst: *mut f32, ds: usize) -> usize {
        s.transpose(src, ss, dst, ds);
        S::LANES
    }

    simd_dispatch! {
        /// # Safety
        /// As [`Simd::transpose`] for the level's lane count (at most 16).
        fn transpose_at(src: *const f32, ss: usize, dst: *mut f32, ds: usize) -> usize = transpose_body;
    }

    #[test]
    fn transpose_moves_every_float_and_nothing_else() {
        for level in CpuLevel::supported() {
            // Strides wider than a block, so that a wrong offset reads or writes a sentinel.
            let (ss, ds) = (16 + 3, 16 + 5);
            let src: Vec<f32> = (0..16 * ss).map(|i| i as f32).collect();
            let mut dst = vec![-1.0f32; 16 * ds];
            // SAFETY: 16 rows of at least 16 floats on both sides; the buffers are distinct.
            let n = unsafe { transpose_at(level, src.as_ptr(), ss, dst.as_mut_ptr(), ds) };
            for r in 0..16 {
                for c in 0..16 {
                    let want = if r < n && c < n { src[c * ss + r] } else { -1.0 };
                    assert_eq!(dst[r * ds + c].to_bits(), want.to_bits(), "{level} ({r}, {c})");
                }
            }
        }
    }
}
