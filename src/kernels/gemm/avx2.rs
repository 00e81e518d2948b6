//! AVX2+FMA instantiation: 6x16 tiles (12 ymm accumulators + 2 B vectors + 1 broadcast = 15 of the
//! 16 registers), narrow panels 12x8.

use super::ukernel::{line_driver, tail_rows, tile, Out};
use super::{Line, Ops};
use crate::kernels::simd::avx2::Avx2;
use crate::kernels::simd::Simd;

/// # Safety
/// As [`super::run_line`]; the CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn line(line: &Line, ops: &Ops, panels: std::ops::Range<usize>) {
    line_driver!(Avx2::new_unchecked(), Avx2, line, ops, panels, 6, [1 2 3 4 5], 12, [1 2 3 4 5 6 7 8 9 10 11]);
}
