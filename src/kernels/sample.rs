//! Resampling of NHWC activations inside networks: bilinear upsampling by an integer factor
//! (PyTorch `interpolate(mode='bilinear', align_corners=False)`), with an optional multiplier for
//! offset fields (EDVR scales upsampled offsets by the same factor), and pooling
//! (`MaxPool2d`/`AvgPool2d` with `count_include_pad=True`).

use super::gemm::SendPtr;
use crate::tensor::Layout;
use rayon::prelude::*;

/// PyTorch's source index for `dst` when scaling by `1/scale_inv` with `align_corners=False`:
/// `(dst + 0.5)·(1/f) - 0.5`, clamped at 0, and the two taps with the high one clamped at the edge.
#[inline]
fn src_taps(dst: usize, f: usize, n: usize) -> (usize, usize, f32) {
    let s = ((dst as f32 + 0.5) * (1.0 / f as f32) - 0.5).max(0.0);
    let i0 = (s as usize).min(n - 1);
    let i1 = if i0 < n - 1 { i0 + 1 } else { i0 };
    (i0, i1, s - i0 as f32)
}

/// `y = mult · bilinear_upsample(x, f)`.
///
/// # Safety
/// `x`/`y` valid for their layouts and not overlapping; `yl` is `f` times `xl` and has its channels.
pub(crate) unsafe fn bilinear_raw(x: *const f32, xl: &Layout, y: *mut f32, yl: &Layout, f: usize, mult: f32) {
    assert_eq!((yl.h, yl.w, yl.c), (xl.h * f, xl.w * f, xl.c), "bilinear upsample geometry");
    let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
    let c = xl.c;
    let xs: Vec<(usize, usize, f32)> = (0..yl.w).map(|o| src_taps(o, f, xl.w)).collect();
    (0..yl.h).into_par_iter().for_each(|oy| {
        let (xp, yp) = (xp, yp);
        let (h0, h1, lh) = src_taps(oy, f, xl.h);
        let (a0, a1) = (1.0 - lh, lh);
        for (ox, &(w0, w1, lw)) in xs.iter().enumerate() {
            let (b0, b1) = (1.0 - lw, lw);
            let p00 = xp.0.offset(xl.offset(h0 as isize, w0 as isize));
            let p01 = xp.0.offset(xl.offset(h0 as isize, w1 as isize));
            let p10 = xp.0.offset(xl.offset(h1 as isize, w0 as isize));
            let p11 = xp.0.offset(xl.offset(h1 as isize, w1 as isize));
            let d = yp.0.offset(yl.offset(oy as isize, ox as isize));
            for ch in 0..c {
                // PyTorch's order: h0lambda·(w0lambda·x00 + w1lambda·x01) + h1lambda·(...).
                let v = a0 * (b0 * *p00.add(ch) + b1 * *p01.add(ch))
                    + a1 * (b0 * *p10.add(ch) + b1 * *p11.add(ch));
                *d.add(ch) = v * mult;
            }
        }
    });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// Average with padding counted in the divisor (`count_include_pad=True`).
    Avg,
}

/// Output size of a pooling window.
pub fn pool_out(n: usize, k: usize, stride: usize, pad: usize) -> usize {
    (n + 2 * pad - k) / stride + 1
}

/// `y = pool(x)` with a `k x k` window, stride and symmetric padding.
///
/// # Safety
/// As [`bilinear_raw`]; `yl` must be the pooled size of `xl`.
pub(crate) unsafe fn pool_raw(
    x: *const f32,
    xl: &Layout,
    y: *mut f32,
    yl: &Layout,
    kind: PoolKind,
    k: usize,
    stride: usize,
    pad: usize,
) {
    assert_eq!(
        (yl.h, yl.w, yl.c),
        (pool_out(xl.h, k, stride, pad), pool_out(xl.w, k, stride, pad), xl.c),
        "pool geometry"
    );
    let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
    let c = xl.c;
    (0..yl.h).into_par_iter().for_each(|oy| {
        let (xp, yp) = (xp, yp);
        let mut acc = vec![0.0f32; c];
        for ox in 0..yl.w {
            // Window bounds as PyTorch computes them: the divisor counts padding but stops at
            // input + padding; the summed pixels are those inside the input.
            let hs = (oy * stride) as isize - pad as isize;
            let ws = (ox * stride) as isize - pad as isize;
            let he = (hs + k as isize).min((xl.h + pad) as isize);
            let we = (ws + k as isize).min((xl.w + pad) as isize);
            let divisor = ((he - hs) * (we - ws)) as f32;
            let (hs, ws) = (hs.max(0), ws.max(0));
            let (he, we) = (he.min(xl.h as isize), we.min(xl.w as isize));
            acc.fill(if kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 });
            for iy in hs..he {
                for ix in ws..we {
                    let p = xp.0.offset(xl.offset(iy, ix));
                    for (ch, a) in acc.iter_mut().enumerate() {
                        let v = *p.add(ch);
                        *a = match kind {
                            // NaN propagates, as in PyTorch's max pooling.
                            PoolKind::Max => {
                                if v > *a || v.is_nan() {
                                    v
                                } else {
                                    *a
                                }
                            }
                            PoolKind::Avg => *a + v,
                        };
                    }
                }
            }
            let d = yp.0.offset(yl.offset(oy as isize, ox as isize));
            for (ch, a) in acc.iter().enumerate() {
                *d.add(ch) = if kind == PoolKind::Avg { a / divisor } else { *a };
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn bilinear_matches_hand_computed_values() {
        // 1x2 image, x2: PyTorch gives [a, .75a+.25b, .25a+.75b, b] along the row.
        let x = Tensor::from_hwc(1, 2, 1, 0, &[1.0, 5.0]);
        let mut y = Tensor::zeros(2, 4, 1, 1);
        let yl = y.layout;
        // SAFETY: owned tensors with matching geometry.
        unsafe { bilinear_raw(x.data.as_ptr(), &x.layout, y.data.as_mut_ptr(), &yl, 2, 2.0) };
        assert_eq!(y.to_hwc(), [2.0, 4.0, 8.0, 10.0, 2.0, 4.0, 8.0, 10.0]);
    }

    #[test]
    fn pooling_counts_padding_like_pytorch() {
        let v: Vec<f32> = (0..5 * 4).map(|i| i as f32).collect();
        let x = Tensor::from_hwc(5, 4, 1, 0, &v);
        let (oh, ow) = (pool_out(5, 3, 2, 1), pool_out(4, 3, 2, 1));
        assert_eq!((oh, ow), (3, 2));
        for kind in [PoolKind::Max, PoolKind::Avg] {
            let mut y = Tensor::zeros(oh, ow, 1, 0);
            let yl = y.layout;
            // SAFETY: as above.
            unsafe { pool_raw(x.data.as_ptr(), &x.layout, y.data.as_mut_ptr(), &yl, kind, 3, 2, 1) };
            let got = y.to_hwc();
            match kind {
                PoolKind::Max => assert_eq!(got, [5.0, 7.0, 13.0, 15.0, 17.0, 19.0]),
                // Top-left window covers rows -1..2, cols -1..2: (0+1+4+5)/9.
                PoolKind::Avg => {
                    assert_eq!(got[0], 10.0 / 9.0);
                    assert_eq!(got[1], (1.0 + 2.0 + 3.0 + 5.0 + 6.0 + 7.0) / 9.0);
                }
            }
        }
    }
}
