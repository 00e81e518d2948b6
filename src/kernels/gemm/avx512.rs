//! AVX-512F instantiation: 12x32 tiles (24 zmm accumulators + 2 B vectors + 1 broadcast of the 32
//! registers), narrow panels 24x16. The tests also run this blocking on an emulated 16-lane vector
//! (`tests.rs`), on any machine.

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
