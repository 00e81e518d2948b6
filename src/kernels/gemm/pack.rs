//! Packing of the B operand (weights) into column panels, done once per model and CPU level.

use super::Shape;
use crate::cpu::CpuLevel;
use crate::tensor::AlignedVec;

/// B[k x n] stored as panels of `nr` columns (a narrower last panel when the remainder fits in
/// fewer vectors: its width is the remainder rounded up to whole vectors), each panel `k` rows of
/// its width, zero-padded past column `n`.
#[derive(Clone, Debug)]
pub struct PackedB {
    shape: Shape,
    k: usize,
    n: usize,
    data: AlignedVec,
}

impl PackedB {
    /// Pack for the register blocking of `level`; `get(k, n)` reads the logical matrix.
    pub fn pack(level: CpuLevel, k: usize, n: usize, get: impl Fn(usize, usize) -> f32) -> Self {
        Self::pack_shape(Shape::of(level), k, n, get)
    }

    /// Pack a row-major `B[k x n]` (`src.len() == k * n`) for `level`, a row segment at a time.
    pub fn from_rows(level: CpuLevel, k: usize, n: usize, src: &[f32]) -> Self {
        assert_eq!(src.len(), k * n, "B must be k x n");
        Self::build(Shape::of(level), k, n, |kk, n0, dst| {
            dst.copy_from_slice(&src[kk * n + n0..][..dst.len()])
        })
    }

    pub(crate) fn pack_shape(shape: Shape, k: usize, n: usize, get: impl Fn(usize, usize) -> f32) -> Self {
        Self::build(shape, k, n, |kk, n0, dst| {
            for (j, v) in dst.iter_mut().enumerate() {
                *v = get(kk, n0 + j);
            }
        })
    }

    /// The panels, each row's valid columns written by `row(kk, n0, dst)`: row `kk` of B from
    /// column `n0`, `dst.len()` columns; the padding stays zero.
    fn build(shape: Shape, k: usize, n: usize, row: impl Fn(usize, usize, &mut [f32])) -> Self {
        let mut p = PackedB { shape, k, n, data: AlignedVec::zeros(0) };
        let mut data = AlignedVec::zeros(p.panels_len());
        let d = data.as_mut_slice();
        for pi in 0..p.panels() {
            let (start, width) = (p.panel_start(pi), p.panel_width(pi));
            let n0 = pi * shape.nr;
            let cols = width.min(n - n0);
            for kk in 0..k {
                row(kk, n0, &mut d[start + kk * width..][..cols]);
            }
        }
        p.data = data;
        p
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn panels(&self) -> usize {
        self.n.div_ceil(self.shape.nr)
    }

    /// Columns of panel `p` including zero padding: `nr`, or for the last panel its remaining
    /// columns rounded up to whole vectors (with two-vector panels: one vector or `nr`).
    pub fn panel_width(&self, p: usize) -> usize {
        let rem = self.n - p * self.shape.nr;
        rem.div_ceil(self.shape.lanes).saturating_mul(self.shape.lanes).min(self.shape.nr)
    }

    /// Number of columns including the padding of the last panel.
    pub fn padded_n(&self) -> usize {
        let p = self.panels();
        if p == 0 {
            0
        } else {
            (p - 1) * self.shape.nr + self.panel_width(p - 1)
        }
    }

    pub fn panel_start(&self, p: usize) -> usize {
        p * self.shape.nr * self.k
    }

    fn panels_len(&self) -> usize {
        self.padded_n() * self.k
    }

    pub(crate) fn panel_ptr(&self, p: usize) -> *const f32 {
        // SAFETY: panel_start(p) <= data.len() for p < panels(); the pointer is only offset here.
        unsafe { self.data.as_ptr().add(self.panel_start(p)) }
    }

    pub fn bytes(&self) -> usize {
        self.data.bytes()
    }
}
