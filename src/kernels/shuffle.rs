//! Pixel shuffle (depth to space) over NHWC activations, the SRVGG variant that adds a
//! nearest-upsampled skip in the same pass, pixel unshuffle (space to depth, the input stage of
//! Real-ESRGAN's x2 and x1 RRDBNet), and nearest-neighbour upsampling (ESRGAN's upsampler, Keras
//! `UpSampling2D`). Pure data movement plus (for the fused form) one add per element, so results
//! are bit-exact with PyTorch's `pixel_shuffle`, `pixel_unshuffle` and `interpolate(.., 'nearest')`.

use super::gemm::SendPtr;
use crate::tensor::Layout;
use rayon::prelude::*;

/// Output geometry check shared by both forms.
fn check(xl: &Layout, yl: &Layout, r: usize) {
    assert!(r >= 1);
    assert_eq!(xl.c, yl.c * r * r, "pixel shuffle channels");
    assert_eq!((yl.h, yl.w), (xl.h * r, xl.w * r), "pixel shuffle size");
}

/// Where sub-pixel `(i, j)` of channel `c` sits among the input's `C·r²` channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShuffleOrder {
    /// PyTorch's `pixel_shuffle`: channel `c·r² + i·r + j` (a stride-r² gather per pixel).
    Torch,
    /// Channel `(i·r + j)·C + c`: each output pixel's channels are one contiguous run. The
    /// producing convolution's output channels are permuted at load time to write this order.
    Grouped,
}

impl ShuffleOrder {
    /// The input channel holding channel `c` of sub-pixel `(i, j)`.
    pub fn channel(self, c: usize, i: usize, j: usize, channels: usize, r: usize) -> usize {
        match self {
            ShuffleOrder::Torch => c * r * r + i * r + j,
            ShuffleOrder::Grouped => (i * r + j) * channels + c,
        }
    }
}

/// `y[Y][X][c] = x[Y/r][X/r][order.channel(c, Y%r, X%r)]` (+ `skip[Y/r][X/r][c]` when given).
///
/// # Safety
/// `x`, `skip` and `y` must be valid for their layouts' lengths and `y` must not overlap the
/// inputs. Layouts are checked.
pub(crate) unsafe fn run_raw(
    x: *const f32,
    xl: &Layout,
    skip: Option<(*const f32, &Layout)>,
    y: *mut f32,
    yl: &Layout,
    r: usize,
    order: ShuffleOrder,
) {
    check(xl, yl, r);
    if let Some((_, sl)) = skip {
        assert_eq!((sl.h, sl.w, sl.c), (xl.h, xl.w, yl.c), "skip geometry");
    }
    let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
    let sp = SendPtr(skip.map_or(std::ptr::null(), |s| s.0) as *mut f32);
    let sl = skip.map(|s| *s.1);
    let c = yl.c;
    match order {
        ShuffleOrder::Torch => (0..yl.h).into_par_iter().for_each(|oy| {
            let (xp, yp, sp) = (xp, yp, sp);
            let (iy, i) = (oy / r, oy % r);
            for ox in 0..yl.w {
                let (ix, j) = (ox / r, ox % r);
                let src = xp.0.offset(xl.offset(iy as isize, ix as isize)).add(order.channel(0, i, j, c, r));
                let dst = yp.0.offset(yl.offset(oy as isize, ox as isize));
                let skip = sl.map(|sl| sp.0.offset(sl.offset(iy as isize, ix as isize)) as *const f32);
                gather(src, r * r, skip, dst, c);
            }
        }),
        // By input row, each input pixel read once front to back: walking output rows instead
        // read every other half-pixel per row, which defeated the prefetcher (the input comes
        // from DRAM at output sizes) and was 1.5x slower than the gather above. Rows are cut
        // into runs of GROUPED_RUN pixels: a streamed band hands over as few as 3 input rows,
        // which whole rows split 2:1 between two threads. realesr-animevideov3's x4 shuffle at
        // 640x360 (`bench --profile`, alternated pairs): 12-row bands on two threads 0.032 /
        // 0.036 s -> 0.014 / 0.015 s; one thread 0.030 / 0.030 -> 0.019 / 0.018 s; the whole
        // image in one call, one thread 0.033 / 0.032 -> 0.024 / 0.019 s, two 0.016 / 0.016 ->
        // 0.011 / 0.010 s.
        ShuffleOrder::Grouped => (0..xl.h * xl.w.div_ceil(GROUPED_RUN)).into_par_iter().for_each(|t| {
            let (xp, yp, sp) = (xp, yp, sp);
            let runs = xl.w.div_ceil(GROUPED_RUN);
            let (iy, ix0) = (t / runs, t % runs * GROUPED_RUN);
            for ix in ix0..(ix0 + GROUPED_RUN).min(xl.w) {
                let src = xp.0.offset(xl.offset(iy as isize, ix as isize));
                let skip = sl.map(|sl| sp.0.offset(sl.offset(iy as isize, ix as isize)) as *const f32);
                for i in 0..r {
                    for j in 0..r {
                        let dst = yp.0.offset(yl.offset((iy * r + i) as isize, (ix * r + j) as isize));
                        gather(src.add(order.channel(0, i, j, c, r)), 1, skip, dst, c);
                    }
                }
            }
        }),
    }
}

/// Input pixels per task of the grouped shuffle.
const GROUPED_RUN: usize = 64;

/// `dst[ch] = src[ch·stride] (+ skip[ch])`; monomorphised call sites give the contiguous
/// (`stride` 1) form a vectorised copy.
///
/// # Safety
/// `src` valid for `c` reads at `stride`, `skip` and `dst` for `c` each.
#[inline(always)]
unsafe fn gather(src: *const f32, stride: usize, skip: Option<*const f32>, dst: *mut f32, c: usize) {
    match skip {
        None => {
            for ch in 0..c {
                *dst.add(ch) = *src.add(ch * stride);
            }
        }
        Some(s) => {
            for ch in 0..c {
                *dst.add(ch) = *src.add(ch * stride) + *s.add(ch);
            }
        }
    }
}

/// `y[Y][X][c·r² + i·r + j] = x[Y·r + i][X·r + j][c]` (PyTorch `pixel_unshuffle` channel order).
///
/// # Safety
/// `x` and `y` valid for their layouts' lengths (channel 0 of their views), not overlapping.
pub(crate) unsafe fn unshuffle_raw(x: *const f32, xl: &Layout, y: *mut f32, yl: &Layout, r: usize) {
    assert!(r >= 1);
    assert_eq!(yl.c, xl.c * r * r, "pixel unshuffle channels");
    assert_eq!((yl.h * r, yl.w * r), (xl.h, xl.w), "pixel unshuffle size");
    let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
    let c = xl.c;
    (0..yl.h).into_par_iter().for_each(|oy| {
        let (xp, yp) = (xp, yp);
        for ox in 0..yl.w {
            let dst = yp.0.offset(yl.offset(oy as isize, ox as isize));
            for i in 0..r {
                for j in 0..r {
                    let src = xp.0.offset(xl.offset((oy * r + i) as isize, (ox * r + j) as isize));
                    for ch in 0..c {
                        *dst.add(ch * r * r + i * r + j) = *src.add(ch);
                    }
                }
            }
        }
    });
}

/// `y[Y][X] = x[Y/r][X/r]` (nearest-neighbour upsampling by an integer factor).
///
/// # Safety
/// As [`unshuffle_raw`].
pub(crate) unsafe fn upsample_nearest_raw(x: *const f32, xl: &Layout, y: *mut f32, yl: &Layout, r: usize) {
    assert!(r >= 1);
    assert_eq!(yl.c, xl.c, "nearest upsample channels");
    assert_eq!((yl.h, yl.w), (xl.h * r, xl.w * r), "nearest upsample size");
    let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
    let c = xl.c;
    (0..yl.h).into_par_iter().for_each(|oy| {
        let (xp, yp) = (xp, yp);
        for ox in 0..yl.w {
            let src = xp.0.offset(xl.offset((oy / r) as isize, (ox / r) as isize));
            std::ptr::copy_nonoverlapping(src, yp.0.offset(yl.offset(oy as isize, ox as isize)), c);
        }
    });
}

/// Dense-HWC reference of pixel unshuffle: `x` is `h x w x c`.
pub fn unshuffle_reference(x: &[f32], h: usize, w: usize, c: usize, r: usize) -> Vec<f32> {
    let (oh, ow, oc) = (h / r, w / r, c * r * r);
    let mut y = vec![0.0; oh * ow * oc];
    for yy in 0..h {
        for xx in 0..w {
            for ch in 0..c {
                y[((yy / r) * ow + xx / r) * oc + ch * r * r + (yy % r) * r + xx % r] =
                    x[(yy * w + xx) * c + ch];
            }
        }
    }
    y
}

/// Dense-HWC reference of nearest upsampling.
pub fn upsample_nearest_reference(x: &[f32], h: usize, w: usize, c: usize, r: usize) -> Vec<f32> {
    let mut y = Vec::with_capacity(h * r * w * r * c);
    for yy in 0..h * r {
        for xx in 0..w * r {
            y.extend_from_slice(&x[((yy / r) * w + xx / r) * c..][..c]);
        }
    }
    y
}

/// Dense-HWC reference for tests.
pub fn reference(x: &[f32], h: usize, w: usize, c_out: usize, r: usize) -> Vec<f32> {
    let cin = c_out * r * r;
    let mut y = vec![0.0; h * r * w * r * c_out];
    for yy in 0..h * r {
        for xx in 0..w * r {
            for c in 0..c_out {
                y[(yy * w * r + xx) * c_out + c] =
                    x[((yy / r) * w + xx / r) * cin + c * r * r + (yy % r) * r + xx % r];
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
    fn unshuffle_and_nearest_are_exact_and_invert() {
        for (h, w, c, r, pad) in
            [(2, 2, 1, 2, 0), (4, 6, 3, 2, 1), (8, 4, 3, 4, 2), (3, 3, 5, 1, 0), (6, 9, 2, 3, 1)]
        {
            let x: Vec<f32> = (0..h * w * c).map(|i| i as f32 * 0.25 - 1.0).collect();
            let xt = Tensor::from_hwc(h, w, c, pad, &x);
            let mut yt = Tensor::zeros(h / r, w / r, c * r * r, 1);
            let yl = yt.layout;
            // SAFETY: owned tensors of matching geometry.
            unsafe { unshuffle_raw(xt.data.as_ptr(), &xt.layout, yt.data.as_mut_ptr(), &yl, r) };
            assert_eq!(yt.to_hwc(), unshuffle_reference(&x, h, w, c, r));
            // pixel_shuffle(pixel_unshuffle(x)) == x
            let mut back = Tensor::zeros(h, w, c, 0);
            let bl = back.layout;
            // SAFETY: as above.
            unsafe {
                run_raw(
                    yt.data.as_ptr(),
                    &yt.layout,
                    None,
                    back.data.as_mut_ptr(),
                    &bl,
                    r,
                    ShuffleOrder::Torch,
                )
            };
            assert_eq!(back.to_hwc(), x);

            let mut up = Tensor::zeros(h * r, w * r, c, 1);
            let ul = up.layout;
            // SAFETY: as above.
            unsafe { upsample_nearest_raw(xt.data.as_ptr(), &xt.layout, up.data.as_mut_ptr(), &ul, r) };
            assert_eq!(up.to_hwc(), upsample_nearest_reference(&x, h, w, c, r));
        }
    }

    #[test]
    fn matches_reference_bit_exactly() {
        for (h, w, c, r, pad) in [(1, 1, 1, 2, 0), (3, 5, 3, 4, 1), (4, 1, 8, 2, 2), (2, 3, 3, 3, 0)] {
            let x: Vec<f32> = (0..h * w * c * r * r).map(|i| i as f32 * 0.5 - 3.0).collect();
            let xt = Tensor::from_hwc(h, w, c * r * r, pad, &x);
            let mut yt = Tensor::zeros(h * r, w * r, c, 1);
            let yl = yt.layout;
            // SAFETY: owned tensors of matching geometry.
            unsafe {
                run_raw(xt.data.as_ptr(), &xt.layout, None, yt.data.as_mut_ptr(), &yl, r, ShuffleOrder::Torch)
            };
            assert_eq!(yt.to_hwc(), reference(&x, h, w, c, r));

            let s: Vec<f32> = (0..h * w * c).map(|i| i as f32 * 0.25).collect();
            let st = Tensor::from_hwc(h, w, c, 0, &s);
            // SAFETY: as above.
            unsafe {
                run_raw(
                    xt.data.as_ptr(),
                    &xt.layout,
                    Some((st.data.as_ptr(), &st.layout)),
                    yt.data.as_mut_ptr(),
                    &yl,
                    r,
                    ShuffleOrder::Torch,
                )
            };
            let base = reference(&x, h, w, c, r);
            let got = yt.to_hwc();
            for yy in 0..h * r {
                for xx in 0..w * r {
                    for ch in 0..c {
                        let i = (yy * w * r + xx) * c + ch;
                        assert_eq!(got[i], base[i] + s[((yy / r) * w + xx / r) * c + ch]);
                    }
                }
            }
        }
    }

    #[test]
    fn grouped_order_is_the_torch_order_permuted() {
        // Widths of one run of GROUPED_RUN pixels, one past it, and two and a tail.
        let runs =
            [(3, GROUPED_RUN, 3, 2, 0), (1, GROUPED_RUN + 1, 1, 2, 1), (2, 2 * GROUPED_RUN + 2, 3, 4, 1)];
        let small = [(1, 1, 1, 2, 0), (3, 5, 3, 4, 1), (4, 1, 8, 2, 2), (2, 3, 5, 3, 0)];
        for (h, w, c, r, pad) in small.into_iter().chain(runs) {
            let n = c * r * r;
            let x: Vec<f32> = (0..h * w * n).map(|i| i as f32 * 0.5 - 3.0).collect();
            // The same map with each pixel's channels moved to the grouped positions.
            let mut g = vec![0.0; x.len()];
            for p in 0..h * w {
                for ch in 0..c {
                    for i in 0..r {
                        for j in 0..r {
                            let (t, o) = (ShuffleOrder::Torch, ShuffleOrder::Grouped);
                            g[p * n + o.channel(ch, i, j, c, r)] = x[p * n + t.channel(ch, i, j, c, r)];
                        }
                    }
                }
            }
            let gt = Tensor::from_hwc(h, w, n, pad, &g);
            let s: Vec<f32> = (0..h * w * c).map(|i| i as f32 * 0.25).collect();
            let st = Tensor::from_hwc(h, w, c, 1, &s);
            let mut yt = Tensor::zeros(h * r, w * r, c, 1);
            let yl = yt.layout;
            let base = reference(&x, h, w, c, r);
            // SAFETY: owned tensors of matching geometry.
            unsafe {
                run_raw(
                    gt.data.as_ptr(),
                    &gt.layout,
                    None,
                    yt.data.as_mut_ptr(),
                    &yl,
                    r,
                    ShuffleOrder::Grouped,
                )
            };
            assert_eq!(yt.to_hwc(), base);
            let skip = Some((st.data.as_ptr(), &st.layout));
            // SAFETY: as above.
            unsafe {
                run_raw(
                    gt.data.as_ptr(),
                    &gt.layout,
                    skip,
                    yt.data.as_mut_ptr(),
                    &yl,
                    r,
                    ShuffleOrder::Grouped,
                )
            };
            for (k, (&v, &b)) in yt.to_hwc().iter().zip(&base).enumerate() {
                let (yy, xx, ch) = (k / (w * r * c), k / c % (w * r), k % c);
                assert_eq!(v, b + s[((yy / r) * w + xx / r) * c + ch]);
            }
        }
    }

    proptest::proptest! {
        /// Any size, factor and border: unshuffle then shuffle is the identity, shuffle then
        /// unshuffle too, and both match the dense references bit for bit.
        #[test]
        fn shuffle_and_unshuffle_invert_each_other(
            h in 1usize..7, w in 1usize..7, c in 1usize..5, r in 1usize..5, pad in 0usize..3, seed in 0u32..1000,
        ) {
            let (bh, bw) = (h * r, w * r);
            let x: Vec<f32> = (0..bh * bw * c).map(|i| ((i as u32 ^ seed).wrapping_mul(2654435761) >> 8) as f32).collect();
            let xt = Tensor::from_hwc(bh, bw, c, pad, &x);
            let mut packed = Tensor::zeros(h, w, c * r * r, pad);
            let pl = packed.layout;
            // SAFETY: owned tensors of matching geometry.
            unsafe { unshuffle_raw(xt.data.as_ptr(), &xt.layout, packed.data.as_mut_ptr(), &pl, r) };
            let p = packed.to_hwc();
            proptest::prop_assert_eq!(&p, &unshuffle_reference(&x, bh, bw, c, r));
            let mut back = Tensor::zeros(bh, bw, c, (pad + 1) % 3);
            let bl = back.layout;
            // SAFETY: as above.
            unsafe { run_raw(packed.data.as_ptr(), &pl, None, back.data.as_mut_ptr(), &bl, r, ShuffleOrder::Torch) };
            proptest::prop_assert_eq!(back.to_hwc(), x.clone());
            proptest::prop_assert_eq!(reference(&p, h, w, c, r), x);
            // The other way round: shuffle then unshuffle.
            let mut again = Tensor::zeros(h, w, c * r * r, 0);
            let al = again.layout;
            // SAFETY: as above.
            unsafe { unshuffle_raw(back.data.as_ptr(), &bl, again.data.as_mut_ptr(), &al, r) };
            proptest::prop_assert_eq!(again.to_hwc(), p);
        }
    }
}
