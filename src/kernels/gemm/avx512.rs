//! AVX-512F instantiation: 12x32 tiles (24 zmm accumulators + 2 B vectors + 1 broadcast of the 32
//! registers), narrow panels 24x16.

use super::ukernel::{line_driver, tail_rows, tile, Out};
use super::{Line, Ops};
use crate::kernels::simd::avx512::Avx512;
use crate::kernels::simd::Simd;

/// # Safety
/// As [`super::run_line`]; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn line(line: &Line, ops: &Ops, panels: std::ops::Range<usize>) {
    line_driver!(Avx512::new_unchecked(), Avx512, line, ops, panels, 12, [1 2 3 4 5 6 7 8 9 10 11],
        24, [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23]);
}

/// The same blocking on the 16-lane emulated vector, so tests exercise this level's tile shapes
/// and tails on machines without AVX-512.
#[cfg(test)]
pub(super) unsafe fn line_emulated(line: &Line, ops: &Ops, panels: std::ops::Range<usize>) {
    use crate::kernels::simd::emu::Emu16;
    line_driver!(Emu16, Emu16, line, ops, panels, 12, [1 2 3 4 5 6 7 8 9 10 11],
        24, [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23]);
}
