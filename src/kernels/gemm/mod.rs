//! Single-precision GEMM `C = epilogue(A · B)` with B packed once into column panels and A read in
//! place through an *addressing descriptor*: row `i` of A is `a + i·a_rs`, and the K dimension is
//! a list of equal-length segments at given offsets from the row start. A dense row-major matrix is
//! one segment; a convolution over an NHWC activation with a zero border is one segment per
//! kernel row (or per tap), which makes the im2col matrix implicit: the microkernel broadcasts
//! straight from the activation and nothing is copied.
//!
//! Register blocking per level (MR rows x NR columns of accumulators):
//! - AVX2+FMA: 6x16 (12 ymm accumulators), narrow last panel 12x8.
//! - AVX-512:  12x32 (24 zmm accumulators), narrow last panel 24x16.
//! - NEON (aarch64): 6x16 (24 q-register accumulators + 6 A vectors + B), narrower last panels
//!   (4, 8 or 12 columns) 7 rows. A rows are loaded four K values at a time and used lane by lane
//!   with `fmla v.4s, v.4s, v.s[L]` (`lane.rs`), which halves the loads of a broadcast kernel.
//! - portable (`wide` f32x8): 6x16, narrow 12x8.
//!
//! The bias, activation and residual add run in the epilogue while the tile is still in registers.

mod pack;
pub mod reference;
mod ukernel;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod lane;
mod neon;
mod portable;

pub use pack::PackedB;
pub(crate) use ukernel::{epilogue, Out};

/// Packed-B bytes of the panels a line driver sweeps together (each MR-row block of A visits all
/// of them before the next block): small enough to stay in a 512 KiB L2 beside the A rows. On
/// Zen 3 (two interleaved runs against an FMA loop, 2 threads) 3x3 convs 128->128 and 256->256 ran
/// at 0.85-0.94 of the loop's rate with 192 KiB groups, 0.83-0.87 sweeping every panel per block
/// and 0.83-0.87 one panel at a time: never worse than either, within this machine's noise.
pub(crate) const PANEL_GROUP_BYTES: usize = 192 << 10;

use crate::cpu::CpuLevel;
use crate::tensor::AlignedVec;

/// Register-blocking geometry of a CPU level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// f32 lanes per vector.
    pub lanes: usize,
    /// Columns of a full panel (two vectors on x86 and portable, four on NEON).
    pub nr: usize,
    /// Rows of the full-panel microkernel.
    pub mr: usize,
    /// Rows of the microkernel used for a narrower last panel (fewer vectors than `nr`).
    pub mr_narrow: usize,
}

impl Shape {
    pub fn of(level: CpuLevel) -> Shape {
        match level {
            CpuLevel::Avx512 => Shape { lanes: 16, nr: 32, mr: 12, mr_narrow: 24 },
            CpuLevel::Neon => neon::SHAPE,
            CpuLevel::Avx2 | CpuLevel::Portable => Shape { lanes: 8, nr: 16, mr: 6, mr_narrow: 12 },
        }
    }
}

/// Element-wise activation applied in the epilogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    None,
    Relu,
    /// `x > 0 ? x : slope·x`.
    LeakyRelu(f32),
    /// Per-output-channel slopes (stored in [`Epilogue::prelu`]).
    PRelu,
}

/// What happens to an accumulator tile before it is stored:
/// `y = act(acc + bias)`, then `out = residual + res_scale · y` when a residual is given, then
/// `out = residual2 + res2_scale · out` when a second residual is given (the scale of the second
/// residual lives in `Ops::res2_scale`, its rows in `Line::res2`).
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// Length at least the packed width of B (padded columns are read, never stored).
    pub bias: Option<&'a [f32]>,
    pub act: Activation,
    /// PReLU slopes, same padding rule as `bias`.
    pub prelu: Option<&'a [f32]>,
    pub res_scale: f32,
}

impl Epilogue<'_> {
    pub const NONE: Epilogue<'static> =
        Epilogue { bias: None, act: Activation::None, prelu: None, res_scale: 1.0 };
}

/// How the K dimension of A is laid out from a row's start (see module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KLayout {
    pub seg_offsets: Vec<isize>,
    pub seg_len: usize,
}

impl KLayout {
    pub fn dense(k: usize) -> Self {
        KLayout { seg_offsets: vec![0], seg_len: k }
    }

    pub fn k(&self) -> usize {
        self.seg_offsets.len() * self.seg_len
    }
}

/// One line of output rows for the kernels: raw pointers because outputs may alias the residual
/// (in-place residual add) and lines are handed to several threads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line {
    pub m: usize,
    pub a: *const f32,
    pub a_rs: isize,
    pub c: *mut f32,
    pub c_rs: isize,
    /// Null when there is no residual.
    pub res: *const f32,
    pub res_rs: isize,
    /// Second residual (applied after the first), null when there is none.
    pub res2: *const f32,
    pub res2_rs: isize,
}

/// Everything about B and the epilogue that is fixed for a whole GEMM.
#[derive(Clone, Copy)]
pub(crate) struct Ops<'a> {
    pub b: &'a PackedB,
    pub kl: &'a KLayout,
    pub bias: *const f32,
    pub prelu: *const f32,
    pub act: Activation,
    pub res_scale: f32,
    /// Scale of the second residual (see [`Epilogue`]); used only where a line has `res2`.
    pub res2_scale: f32,
}

// SAFETY: the pointers refer to read-only bias/slope data that outlives the GEMM.
unsafe impl Send for Ops<'_> {}
// SAFETY: as above; nothing is written through them.
unsafe impl Sync for Ops<'_> {}

impl<'a> Ops<'a> {
    pub fn new(b: &'a PackedB, kl: &'a KLayout, ep: &Epilogue<'a>) -> Self {
        let padded = b.padded_n();
        if let Some(bias) = ep.bias {
            assert!(bias.len() >= padded, "bias must be padded to the packed width");
        }
        if ep.act == Activation::PRelu {
            assert!(ep.prelu.is_some_and(|p| p.len() >= padded), "PReLU slopes missing or short");
        }
        assert_eq!(kl.k(), b.k(), "K layout does not match the packed B");
        Ops {
            b,
            kl,
            bias: ep.bias.map_or(std::ptr::null(), |s| s.as_ptr()),
            prelu: ep.prelu.map_or(std::ptr::null(), |s| s.as_ptr()),
            act: ep.act,
            res_scale: ep.res_scale,
            res2_scale: 1.0,
        }
    }
}

/// Compute output columns of panels `panels` for every row of `line`.
///
/// # Safety
/// Every address the line and K layout describe must be valid: rows `0..m` of A with all segment
/// offsets and `seg_len` floats each, `c`/`res` rows with `b.n()` floats each. `level` must be
/// supported by this CPU and match the level B was packed for.
pub(crate) unsafe fn run_line(level: CpuLevel, line: &Line, ops: &Ops, panels: std::ops::Range<usize>) {
    debug_assert_eq!(Shape::of(level), ops.b.shape());
    match level {
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512 => avx512::line(line, ops, panels),
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx2 => avx2::line(line, ops, panels),
        #[cfg(target_arch = "aarch64")]
        CpuLevel::Neon => neon::line(line, ops, panels),
        _ => portable::line(line, ops, panels),
    }
}

/// Raw pointer wrapper that may cross threads; the code using it guarantees disjoint writes.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: only used to hand disjoint output regions to rayon workers.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer; calling this (rather than reading `.0`) makes a closure capture the whole
    /// `SendPtr`, which is `Send`, instead of the raw pointer field.
    #[inline(always)]
    pub fn get(self) -> *mut T {
        self.0
    }
}

/// `C[m x n] = epilogue(A[m x k] · B)` for row-major A (leading dimension `lda`) and C (`ldc`), with
/// B already packed. Rows are split across the current rayon pool.
///
/// Panics if the slices are too short for the given dimensions.
pub fn sgemm_packed(
    level: CpuLevel,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
) {
    let (n, k) = (b.n(), b.k());
    if m == 0 || n == 0 {
        return;
    }
    assert!(lda >= k && ldc >= n);
    assert!(a.len() >= (m - 1) * lda + k, "A too short");
    assert!(c.len() >= (m - 1) * ldc + n, "C too short");
    let kl = KLayout::dense(k);
    let ops = Ops::new(b, &kl, ep);
    let shape = b.shape();
    let chunk = (shape.mr * 8).max(1);
    let cp = SendPtr(c.as_mut_ptr());
    use rayon::prelude::*;
    (0..m.div_ceil(chunk)).into_par_iter().for_each(|ci| {
        let r0 = ci * chunk;
        let rows = chunk.min(m - r0);
        let cp = cp;
        let line = Line {
            m: rows,
            // SAFETY: r0 < m, and the asserts above bound every row this chunk reads and writes.
            a: unsafe { a.as_ptr().add(r0 * lda) },
            a_rs: lda as isize,
            // SAFETY: as above; chunks cover disjoint rows of C.
            c: unsafe { cp.0.add(r0 * ldc) },
            c_rs: ldc as isize,
            res: std::ptr::null(),
            res_rs: 0,
            res2: std::ptr::null(),
            res2_rs: 0,
        };
        // SAFETY: bounds checked above; the level matches the packing (asserted in debug).
        unsafe { run_line(level, &line, &ops, 0..b.panels()) }
    });
}

/// Convenience: pack a row-major `B[k x n]` for `level` and multiply.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    level: CpuLevel,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let packed = PackedB::pack(level, k, n, |kk, nn| b[kk * ldb + nn]);
    sgemm_packed(level, m, a, lda, &packed, c, ldc, &Epilogue::NONE);
}

/// A per-output-channel vector padded with zeros to the packed width of `b`.
pub fn pad_channels(v: &[f32], b: &PackedB) -> AlignedVec {
    let mut out = AlignedVec::zeros(b.padded_n().max(v.len()));
    out.as_mut_slice()[..v.len()].copy_from_slice(v);
    out
}

#[cfg(test)]
mod tests;
