//! Squeeze-and-excitation (Hu et al.): per-channel gates from the global average of a feature map,
//! `g = sigmoid(W2·relu(W1·mean(x) + b1) + b2)`, then `y = x · g`. The two fully connected layers
//! (ncnn `InnerProduct`, PyTorch 1x1 convs on a 1x1 map) are tiny and run in f64; the pooling and
//! the channel scaling are full passes and run as SIMD kernels.
//!
//! The gates depend on every pixel of the map, so a network containing this block has an infinite
//! receptive field: tiling changes its output slightly (as it does in every waifu2x port).

use super::gemm::SendPtr;
use super::pool;
use super::simd::{simd_dispatch, Simd};
use crate::cpu::CpuLevel;
use crate::tensor::Layout;
use rayon::prelude::*;

/// Weights of one block: `w1` is `[mid][c]`, `w2` is `[c][mid]` (PyTorch / ncnn order).
#[derive(Clone, Debug)]
pub struct SqueezeExcite {
    pub c: usize,
    pub mid: usize,
    level: CpuLevel,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

impl SqueezeExcite {
    pub fn new(
        level: CpuLevel,
        c: usize,
        mid: usize,
        w1: &[f32],
        b1: &[f32],
        w2: &[f32],
        b2: &[f32],
    ) -> Self {
        assert_eq!((w1.len(), b1.len(), w2.len(), b2.len()), (mid * c, mid, c * mid, c), "SE weight sizes");
        SqueezeExcite { c, mid, level, w1: w1.to_vec(), b1: b1.to_vec(), w2: w2.to_vec(), b2: b2.to_vec() }
    }

    /// Geometry only, for graphs that are planned but never run.
    pub fn shape_only(c: usize, mid: usize) -> Self {
        SqueezeExcite { c, mid, level: CpuLevel::Portable, w1: vec![], b1: vec![], w2: vec![], b2: vec![] }
    }

    pub fn bytes(&self) -> usize {
        (self.w1.len() + self.b1.len() + self.w2.len() + self.b2.len()) * 4
    }

    /// Gates from per-channel means.
    pub fn gates(&self, mean: &[f64]) -> Vec<f32> {
        fc_gates(mean, self.c, self.mid, &self.w1, &self.b1, &self.w2, &self.b2)
    }

    /// `y = x · gates(mean(x))`. `y` may be exactly `x` (same pointer and layout).
    ///
    /// # Safety
    /// `x` valid for `xl.len()` reads and `y` for `yl.len()` writes (channel 0 of their views);
    /// they either coincide exactly or do not overlap. Layout geometry is checked.
    pub(crate) unsafe fn run_raw(&self, x: *const f32, xl: &Layout, y: *mut f32, yl: &Layout) {
        assert_eq!(self.w1.len(), self.mid * self.c, "a shape-only SE block cannot be run");
        assert_eq!((xl.c, yl.c), (self.c, self.c));
        assert_eq!((xl.h, xl.w), (yl.h, yl.w));
        let mean = pool::global_avg_raw(self.level, x, xl);
        let g = self.gates(&mean);
        let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
        let level = self.level;
        (0..xl.h).into_par_iter().for_each(|row| {
            let (xp, yp) = (xp, yp);
            let xr = xp.0.offset(xl.offset(row as isize, 0));
            let yr = yp.0.offset(yl.offset(row as isize, 0));
            scale_row(level, xr, xl.cs, yr, yl.cs, xl.w, g.as_ptr(), g.len());
        });
    }
}

/// The two fully connected layers, in f64.
fn fc_gates(mean: &[f64], c: usize, mid: usize, w1: &[f32], b1: &[f32], w2: &[f32], b2: &[f32]) -> Vec<f32> {
    let hidden: Vec<f64> = (0..mid)
        .map(|j| {
            let v = b1[j] as f64 + (0..c).map(|i| w1[j * c + i] as f64 * mean[i]).sum::<f64>();
            v.max(0.0)
        })
        .collect();
    (0..c)
        .map(|i| {
            let v = b2[i] as f64 + (0..mid).map(|j| w2[i * mid + j] as f64 * hidden[j]).sum::<f64>();
            (1.0 / (1.0 + (-v).exp())) as f32
        })
        .collect()
}

/// `y[x][ch] = x[x][ch] · g[ch]` for `w` pixels of one row.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn scale_row_body<S: Simd>(
    s: S,
    x: *const f32,
    xcs: usize,
    y: *mut f32,
    ycs: usize,
    w: usize,
    g: *const f32,
    c: usize,
) {
    let l = S::LANES;
    for px in 0..w {
        let (xp, yp) = (x.add(px * xcs), y.add(px * ycs));
        let mut c0 = 0;
        while c0 + l <= c {
            s.store(yp.add(c0), s.mul(s.load(xp.add(c0)), s.load(g.add(c0))));
            c0 += l;
        }
        if c0 < c {
            let n = c - c0;
            s.store_part(yp.add(c0), s.mul(s.load_part(xp.add(c0), n), s.load_part(g.add(c0), n)), n);
        }
    }
}

simd_dispatch! {
    #[allow(clippy::too_many_arguments)]
    fn scale_row(x: *const f32, xcs: usize, y: *mut f32, ycs: usize, w: usize, g: *const f32, c: usize) = scale_row_body;
}

/// Scalar reference over dense HWC data (f64 pooling and gates).
pub fn reference(
    x: &[f32],
    h: usize,
    w: usize,
    c: usize,
    mid: usize,
    w1: &[f32],
    b1: &[f32],
    w2: &[f32],
    b2: &[f32],
) -> Vec<f32> {
    let mean = pool::global_avg_reference(x, h, w, c);
    let g = fc_gates(&mean, c, mid, w1, b1, w2, b2);
    x.iter().enumerate().map(|(i, v)| v * g[i % c]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn matches_reference_in_place_and_between_views() {
        for (h, w, c, mid) in [(1, 1, 8, 1), (3, 7, 16, 2), (5, 4, 64, 8), (2, 9, 21, 3)] {
            let x: Vec<f32> = (0..h * w * c).map(|i| ((i * 31) % 97) as f32 / 40.0 - 1.2).collect();
            let w1: Vec<f32> = (0..mid * c).map(|i| ((i * 13) % 17) as f32 / 8.0 - 1.0).collect();
            let b1: Vec<f32> = (0..mid).map(|i| i as f32 * 0.1 - 0.05).collect();
            let w2: Vec<f32> = (0..c * mid).map(|i| ((i * 11) % 19) as f32 / 9.0 - 1.0).collect();
            let b2: Vec<f32> = (0..c).map(|i| 0.2 - i as f32 * 0.01).collect();
            let want = reference(&x, h, w, c, mid, &w1, &b1, &w2, &b2);
            for level in CpuLevel::supported() {
                let se = SqueezeExcite::new(level, c, mid, &w1, &b1, &w2, &b2);
                let mut t = Tensor::from_hwc(h, w, c, 1, &x);
                let l = t.layout;
                let p = t.data.as_mut_ptr();
                // SAFETY: in place over one owned tensor (allowed: identical pointer and layout).
                unsafe { se.run_raw(p, &l, p, &l) };
                for (i, (g, r)) in t.to_hwc().iter().zip(&want).enumerate() {
                    assert!((g - r).abs() < 1e-5, "{level} {h}x{w}x{c}: [{i}] {g} vs {r}");
                }
                // The AVX-512 shape on the emulated 16-lane vector.
                let g = se.gates(&crate::kernels::pool::global_avg_reference(&x, h, w, c));
                let mut y = vec![0.0f32; h * w * c];
                // SAFETY: dense buffers of h*w*c floats; g holds c gates.
                unsafe {
                    scale_row_body(
                        crate::kernels::simd::emu::Emu16::default(),
                        x.as_ptr(),
                        c,
                        y.as_mut_ptr(),
                        c,
                        h * w,
                        g.as_ptr(),
                        c,
                    )
                };
                for (a, b) in y.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-5, "emu16 {h}x{w}x{c}");
                }
                // Into a channel view of a wider buffer.
                let mut out = Tensor::zeros(h, w, c + 2, 0);
                out.data.as_mut_slice().fill(3.0);
                let xt = Tensor::from_hwc(h, w, c, 1, &x);
                let yl = Layout { c, ..out.layout };
                // SAFETY: distinct owned tensors; the view (offset 1, c channels) fits in c + 2.
                unsafe { se.run_raw(xt.data.as_ptr(), &xt.layout, out.data.as_mut_ptr().add(1), &yl) };
                for (pi, p) in out.to_hwc().chunks(c + 2).enumerate() {
                    assert_eq!((p[0], p[c + 1]), (3.0, 3.0), "{level}: wrote outside the view");
                    for ch in 0..c {
                        assert!((p[1 + ch] - want[pi * c + ch]).abs() < 1e-5);
                    }
                }
            }
        }
    }
}
