//! Element-wise ops over NHWC views: the cropped skip-add of U-Nets, `y = crop(a) + b`, where the
//! crop is a spatial offset into `a` (PyTorch `F.pad(a, (-t, -t, -t, -t)) + b`, ncnn `Crop` then
//! `Eltwise` sum), and the plain crop when there is no `b`. One f32 add per element (or none), so
//! the results are bit-exact with PyTorch.

use super::gemm::SendPtr;
use crate::tensor::Layout;
use rayon::prelude::*;

/// `y[i][j] = a[i + top][j + left] (+ b[i][j])` over `y`'s interior.
///
/// # Safety
/// Pointers address channel 0 of views valid for their layouts' lengths. `y` may coincide exactly
/// with `b` (same pointer and layout) and must not otherwise overlap `a` or `b`.
pub(crate) unsafe fn crop_add_raw(
    a: *const f32,
    al: &Layout,
    top: usize,
    left: usize,
    b: Option<(*const f32, &Layout)>,
    y: *mut f32,
    yl: &Layout,
) {
    assert!(al.h >= yl.h + top && al.w >= yl.w + left, "crop window outside its source");
    assert_eq!(al.c, yl.c, "crop-add channels");
    if let Some((_, bl)) = b {
        assert_eq!((bl.h, bl.w, bl.c), (yl.h, yl.w, yl.c), "crop-add operand geometry");
    }
    let (ap, yp) = (SendPtr(a as *mut f32), SendPtr(y));
    let bp = SendPtr(b.map_or(std::ptr::null(), |b| b.0) as *mut f32);
    let bl = b.map(|b| *b.1);
    let c = yl.c;
    (0..yl.h).into_par_iter().for_each(|i| {
        let (ap, yp, bp) = (ap, yp, bp);
        for j in 0..yl.w {
            let src = std::slice::from_raw_parts(
                ap.0.offset(al.offset((i + top) as isize, (j + left) as isize)),
                c,
            );
            let dst = yp.0.offset(yl.offset(i as isize, j as isize));
            match bl {
                None => std::ptr::copy_nonoverlapping(src.as_ptr(), dst, c),
                Some(bl) => {
                    let bs = bp.0.offset(bl.offset(i as isize, j as isize));
                    for (ch, v) in src.iter().enumerate() {
                        *dst.add(ch) = v + *bs.add(ch);
                    }
                }
            }
        }
    });
}

/// Dense-HWC reference: `a` is `ah x aw x c`, `b` (if any) and the result are `h x w x c`.
#[allow(clippy::too_many_arguments)]
pub fn crop_add_reference(
    a: &[f32],
    aw: usize,
    c: usize,
    top: usize,
    left: usize,
    b: Option<&[f32]>,
    h: usize,
    w: usize,
) -> Vec<f32> {
    let mut y = Vec::with_capacity(h * w * c);
    for i in 0..h {
        for j in 0..w {
            for ch in 0..c {
                let v = a[((i + top) * aw + j + left) * c + ch];
                y.push(match b {
                    Some(b) => v + b[(i * w + j) * c + ch],
                    None => v,
                });
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn crop_and_crop_add_are_exact() {
        for (ah, aw, c, top, left, h, w) in
            [(9, 9, 3, 4, 4, 1, 1), (12, 10, 5, 2, 1, 8, 7), (40, 40, 64, 16, 16, 8, 8)]
        {
            let a: Vec<f32> = (0..ah * aw * c).map(|i| i as f32 * 0.37 - 5.0).collect();
            let b: Vec<f32> = (0..h * w * c).map(|i| 1.0 / (i as f32 + 1.5)).collect();
            let at = Tensor::from_hwc(ah, aw, c, 1, &a);
            for with_b in [false, true] {
                let want = crop_add_reference(&a, aw, c, top, left, with_b.then_some(&b[..]), h, w);
                // Out of place, into a tensor with a border.
                let bt = Tensor::from_hwc(h, w, c, 2, &b);
                let mut yt = Tensor::zeros(h, w, c, 1);
                let yl = yt.layout;
                let bv = with_b.then(|| (bt.data.as_ptr(), &bt.layout));
                // SAFETY: distinct owned tensors of the given layouts.
                unsafe {
                    crop_add_raw(at.data.as_ptr(), &at.layout, top, left, bv, yt.data.as_mut_ptr(), &yl)
                };
                assert_eq!(yt.to_hwc(), want);
                if with_b {
                    // In place over b.
                    let mut bt = Tensor::from_hwc(h, w, c, 0, &b);
                    let l = bt.layout;
                    let p = bt.data.as_mut_ptr();
                    // SAFETY: y coincides exactly with b, which crop_add_raw allows.
                    unsafe { crop_add_raw(at.data.as_ptr(), &at.layout, top, left, Some((p, &l)), p, &l) };
                    assert_eq!(bt.to_hwc(), want);
                }
            }
        }
    }
}
