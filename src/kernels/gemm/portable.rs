//! Portable instantiation over `wide::f32x8` (NEON on aarch64, SSE2 on baseline x86-64).

use super::ukernel::{line_driver, tail_rows, tile, Out};
use super::{Line, Ops};
use crate::kernels::simd::portable::Portable;
use crate::kernels::simd::Simd;

/// # Safety
/// As [`super::run_line`].
pub(super) unsafe fn line(line: &Line, ops: &Ops, panels: std::ops::Range<usize>) {
    line_driver!(Portable, Portable, line, ops, panels, 6, [1 2 3 4 5], 12, [1 2 3 4 5 6 7 8 9 10 11]);
}
