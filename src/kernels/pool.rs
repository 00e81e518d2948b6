//! Global average pooling over NHWC activations (the "squeeze" of squeeze-and-excitation).
//!
//! Each image row is summed per channel in f32 vector lanes, pixels in order; the row sums are
//! then added in row order in f64. Rows run in parallel, but the combination order is fixed, so
//! the result does not depend on the thread count.

use super::gemm::SendPtr;
use super::simd::{simd_dispatch, Simd};
use crate::cpu::CpuLevel;
use crate::tensor::Layout;
use rayon::prelude::*;

/// Per-channel sums of `w` pixels `cs` floats apart, channels `0..c`, into `out[0..c]`.
#[inline(always)]
unsafe fn row_sum_body<S: Simd>(s: S, row: *const f32, w: usize, cs: usize, c: usize, out: *mut f32) {
    let l = S::LANES;
    let mut c0 = 0;
    while c0 < c {
        let n = (c - c0).min(l);
        let mut acc = s.zero();
        for x in 0..w {
            let p = row.add(x * cs + c0);
            let v = if n == l { s.load(p) } else { s.load_part(p, n) };
            acc = s.add(acc, v);
        }
        if n == l {
            s.store(out.add(c0), acc);
        } else {
            s.store_part(out.add(c0), acc, n);
        }
        c0 += l;
    }
}

simd_dispatch! {
    fn row_sum(row: *const f32, w: usize, cs: usize, c: usize, out: *mut f32) = row_sum_body;
}

/// Mean of every channel of the interior of the view `x` (layout `xl`).
///
/// # Safety
/// `x` must be valid for `xl.len()` reads (it addresses channel 0 of the view).
pub(crate) unsafe fn global_avg_raw(level: CpuLevel, x: *const f32, xl: &Layout) -> Vec<f64> {
    let (c, w) = (xl.c, xl.w);
    let xp = SendPtr(x as *mut f32);
    let rows: Vec<Vec<f32>> = (0..xl.h)
        .into_par_iter()
        .map(|y| {
            let mut sums = vec![0.0f32; c];
            row_sum(level, xp.get().offset(xl.offset(y as isize, 0)), w, xl.cs, c, sums.as_mut_ptr());
            sums
        })
        .collect();
    let mut total = vec![0.0f64; c];
    for r in &rows {
        for (t, v) in total.iter_mut().zip(r) {
            *t += *v as f64;
        }
    }
    let n = (xl.h * xl.w) as f64;
    total.iter_mut().for_each(|t| *t /= n);
    total
}

/// Scalar reference over dense HWC data.
pub fn global_avg_reference(x: &[f32], h: usize, w: usize, c: usize) -> Vec<f64> {
    let mut total = vec![0.0f64; c];
    for p in x[..h * w * c].chunks(c) {
        for (t, v) in total.iter_mut().zip(p) {
            *t += *v as f64;
        }
    }
    total.iter().map(|t| t / (h * w) as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn matches_reference_on_every_level() {
        for (h, w, c) in [(1, 1, 1), (3, 5, 7), (4, 9, 16), (7, 3, 33), (2, 31, 64), (1, 40, 17)] {
            let x: Vec<f32> = (0..h * w * c).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
            let want = global_avg_reference(&x, h, w, c);
            // A view of the first c channels of a buffer with 3 more, border 1.
            let wide: Vec<f32> = x.chunks(c).flat_map(|p| p.iter().copied().chain([100.0; 3])).collect();
            let t = Tensor::from_hwc(h, w, c + 3, 1, &wide);
            let l = Layout { c, ..t.layout };
            for level in CpuLevel::supported() {
                // SAFETY: the view lies inside the owned tensor.
                let got = unsafe { global_avg_raw(level, t.data.as_ptr(), &l) };
                for (g, r) in got.iter().zip(&want) {
                    assert!((g - r).abs() < 1e-5, "{level} {h}x{w}x{c}: {g} vs {r}");
                }
            }
            // The AVX-512 shape (16 lanes, tails) on the emulated vector, on any machine.
            let mut sums = vec![0.0f32; c];
            for y in 0..h {
                let mut row = vec![0.0f32; c];
                // SAFETY: the row lies inside the owned tensor; `row` holds c floats.
                unsafe {
                    row_sum_body(
                        crate::kernels::simd::emu::Emu16::default(),
                        t.data.as_ptr().offset(l.offset(y as isize, 0)),
                        w,
                        l.cs,
                        c,
                        row.as_mut_ptr(),
                    )
                };
                sums.iter_mut().zip(&row).for_each(|(s, r)| *s += r);
            }
            for (s, r) in sums.iter().zip(&want) {
                assert!((*s as f64 / (h * w) as f64 - r).abs() < 1e-5, "emu16 {h}x{w}x{c}");
            }
        }
    }
}
