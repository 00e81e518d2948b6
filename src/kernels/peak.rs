//! The FMA-throughput yardstick that kernel efficiencies are quoted against: independent chains
//! of vector fused multiply-adds with no memory traffic, at the vector width of a CPU level.
//! `benches/peak.rs` alternates it with the GEMM and convolution so both see the same phase of a
//! machine whose clock drifts.

use crate::cpu::CpuLevel;
use crate::kernels::simd::{simd_dispatch, Simd};

/// Independent accumulator chains: enough to cover an FMA latency of 4-6 cycles on two pipes.
pub const CHAINS: usize = 12;

#[inline(always)]
unsafe fn chains_body<S: Simd>(s: S, iters: usize) -> f32 {
    let mut acc = [s.splat(1.0); CHAINS];
    let m = s.splat(0.999_999);
    let c = s.splat(1e-7);
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = s.fma(*a, m, c);
        }
    }
    let mut lane0 = [0.0f32; 16];
    let mut sum = 0.0;
    for a in acc {
        s.store(lane0.as_mut_ptr(), a);
        sum += lane0[0];
    }
    sum
}

simd_dispatch! {
    /// # Safety
    /// None beyond the dispatch's own check of `level`.
    fn chains_at(iters: usize) -> f32 = chains_body;
}

/// Run `iters` rounds of [`CHAINS`] vector FMAs at `level`; returns the sum of lane 0 of every
/// chain (each chain is `x <- x·0.999999 + 1e-7` from 1) so the work cannot be elided.
/// Panics if `level` is not supported by this CPU.
pub fn fma_chains(level: CpuLevel, iters: usize) -> f32 {
    // SAFETY: `chains_at` checks that the level is supported; the body touches only locals.
    unsafe { chains_at(level, iters) }
}

/// Floating-point operations (2 per lane of each FMA) of [`fma_chains`] with `iters` rounds.
pub fn fma_chains_flops(level: CpuLevel, iters: usize) -> u64 {
    (iters * CHAINS * crate::kernels::gemm::Shape::of(level).lanes * 2) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_compute_the_recurrence() {
        let mut x = 1.0f32;
        for _ in 0..1000 {
            x = x.mul_add(0.999_999, 1e-7);
        }
        for level in CpuLevel::supported() {
            let got = fma_chains(level, 1000);
            let want = CHAINS as f32 * x;
            assert!((got - want).abs() <= 1e-5 * want, "{level}: {got} vs {want}");
        }
        assert_eq!(fma_chains_flops(CpuLevel::Avx2, 10), 10 * 12 * 8 * 2);
    }
}
