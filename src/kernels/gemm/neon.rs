//! NEON instantiation (aarch64): the lane-indexed kernel of `lane.rs` on `float32x4_t`, 6x16
//! tiles, narrower last panels 7 rows. Its blocking also runs on an emulated 4-lane vector so the
//! x86 tests check its tiles and tails.

pub(super) use super::lane::SHAPE;

/// # Safety
/// As [`super::run_line`] (NEON is part of the aarch64 baseline).
#[cfg(target_arch = "aarch64")]
pub(super) unsafe fn line(line: &super::Line, ops: &super::Ops, panels: std::ops::Range<usize>) {
    use crate::kernels::simd::neon::Neon;
    super::lane::line_driver(Neon::new(), line, ops, panels)
}

/// The NEON blocking on the emulated 4-lane vector, for tests on any machine.
///
/// # Safety
/// As [`super::run_line`], with `ops.b` packed for [`SHAPE`].
#[cfg(test)]
pub(super) unsafe fn line_emulated(line: &super::Line, ops: &super::Ops, panels: std::ops::Range<usize>) {
    use crate::kernels::simd::emu::Emu4;
    super::lane::line_driver(Emu4::default(), line, ops, panels)
}
