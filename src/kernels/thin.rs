//! Stride-1 convolutions with at most four output channels: the RGB (or grey) output layer of
//! most models, 64 -> 3 at the output resolution. The GEMM puts output channels in the vector
//! lanes, so three channels fill 3 of a panel's 16 (AVX2) columns and Winograd transforms every
//! input channel for three outputs; here the lanes hold pixels instead. A strip of input rows
//! is first transposed to channel-major order (a pixel run of one channel is then one vector
//! load), and every lane accumulates its pixel's K terms in the GEMM's order, `(ky, kx, ci)`,
//! with one fused multiply-add each, then runs the GEMM epilogue's operations: the results are
//! the bits of the direct GEMM path on every FMA level.

use super::gemm::{Activation, SendPtr};
use super::simd::Simd;
use crate::cpu::CpuLevel;
use crate::tensor::Layout;
use rayon::prelude::*;

/// Most output channels this kernel takes.
pub const MAX_COUT: usize = 4;

/// Output rows and columns per work item: the transposed input of an item, `(ROWS + kh - 1)`
/// rows of `cin` channels by `COLS + kw - 1 + SLACK` columns, takes about 250 KiB for 64
/// channels and a 3x3 kernel (L2-resident), and each input row is transposed for `ROWS` output
/// rows (1.25 times in all for 3x3).
const ROWS: usize = 8;
const COLS: usize = 48;

/// Pixel vectors per pass of the K loop.
const PV: usize = 3;

/// Extra columns per transposed row: the last pass loads PV whole vectors (up to 48 floats)
/// past its first pixel.
const SLACK: usize = PV * 16;

/// Weights and epilogue of a thin convolution.
#[derive(Clone, Debug)]
pub struct ThinConv {
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    /// `w[co·K + k]`, K ordered `(ky, kx, ci)` as the packed GEMM weights.
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
    prelu: Option<Vec<f32>>,
}

/// The residuals and activation of one run (see [`ThinConv::run_raw`]).
#[derive(Clone, Copy)]
pub(crate) struct ThinEpilogue<'a> {
    pub act: Activation,
    pub res: Option<(*const f32, &'a Layout, f32)>,
    pub res2: Option<(*const f32, &'a Layout, f32)>,
}

impl ThinConv {
    /// `weight` is OIHW; `cout <= MAX_COUT`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cin: usize,
        cout: usize,
        kh: usize,
        kw: usize,
        pad: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        prelu: Option<&[f32]>,
    ) -> Self {
        assert!((1..=MAX_COUT).contains(&cout), "thin convolution with {cout} outputs");
        assert_eq!(weight.len(), cout * cin * kh * kw);
        let k = kh * kw * cin;
        let mut w = vec![0.0; cout * k];
        for co in 0..cout {
            for ky in 0..kh {
                for kx in 0..kw {
                    for ci in 0..cin {
                        w[co * k + (ky * kw + kx) * cin + ci] = weight[((co * cin + ci) * kh + ky) * kw + kx];
                    }
                }
            }
        }
        ThinConv {
            cin,
            cout,
            kh,
            kw,
            pad,
            w,
            bias: bias.map(|b| b.to_vec()),
            prelu: prelu.map(|p| p.to_vec()),
        }
    }

    pub fn has_prelu(&self) -> bool {
        self.prelu.is_some()
    }

    pub fn bytes(&self) -> usize {
        4 * (self.w.len()
            + self.bias.as_ref().map_or(0, |b| b.len())
            + self.prelu.as_ref().map_or(0, |p| p.len()))
    }

    /// `y = res2 + s2·(res + s·act(conv(x) + bias))`, stride 1.
    ///
    /// # Safety
    /// As [`super::conv::Conv2d::run_raw`] (`xl.pad >= pad`, output size matching).
    pub(crate) unsafe fn run_raw(
        &self,
        level: CpuLevel,
        x: *const f32,
        xl: &Layout,
        y: *mut f32,
        yl: &Layout,
        ep: ThinEpilogue,
    ) {
        let (ih, iw) = (ROWS + self.kh - 1, COLS + self.kw - 1 + SLACK);
        let (row_items, col_items) = (yl.h.div_ceil(ROWS), yl.w.div_ceil(COLS));
        let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
        let r1 = ep.res.map(|(p, l, s)| (SendPtr(p as *mut f32), *l, s));
        let r2 = ep.res2.map(|(p, l, s)| (SendPtr(p as *mut f32), *l, s));
        let (xl, yl, act) = (*xl, *yl, ep.act);
        (0..row_items * col_items).into_par_iter().for_each_init(
            || vec![0.0f32; ih * self.cin * iw],
            |t, item| {
                let (xp, yp) = (xp, yp);
                let res = r1.map(|(p, l, s)| (p.0 as *const f32, l, s));
                let res2 = r2.map(|(p, l, s)| (p.0 as *const f32, l, s));
                let item = Item {
                    oy0: (item / col_items) * ROWS,
                    ox0: (item % col_items) * COLS,
                    iw,
                    xl,
                    yl,
                    act,
                    res,
                    res2,
                };
                dispatch(level, self, &item, xp.0, yp.0, t);
            },
        );
    }
}

/// One work item: output rows `oy0..oy0 + ROWS`, columns `ox0..ox0 + COLS` (clipped).
struct Item {
    oy0: usize,
    ox0: usize,
    /// Columns of a transposed row (with slack for whole-vector loads).
    iw: usize,
    xl: Layout,
    yl: Layout,
    act: Activation,
    res: Option<(*const f32, Layout, f32)>,
    res2: Option<(*const f32, Layout, f32)>,
}

crate::kernels::simd::simd_dispatch! {
    /// # Safety
    /// As [`ThinConv::run_raw`], for one item; `t` holds the item's transposed input.
    fn dispatch(c: &ThinConv, it: &Item, x: *const f32, y: *mut f32, t: &mut [f32]) = item_simd;
}

#[inline(always)]
unsafe fn item_simd<S: Simd>(s: S, c: &ThinConv, it: &Item, x: *const f32, y: *mut f32, t: &mut [f32]) {
    match c.cout {
        1 => item_co::<S, 1>(s, c, it, x, y, t),
        2 => item_co::<S, 2>(s, c, it, x, y, t),
        3 => item_co::<S, 3>(s, c, it, x, y, t),
        _ => item_co::<S, 4>(s, c, it, x, y, t),
    }
}

#[inline(always)]
unsafe fn item_co<S: Simd, const CO: usize>(
    s: S,
    c: &ThinConv,
    it: &Item,
    x: *const f32,
    y: *mut f32,
    t: &mut [f32],
) {
    let l = S::LANES;
    let (xl, yl) = (&it.xl, &it.yl);
    let rows = ROWS.min(yl.h - it.oy0);
    let cols = COLS.min(yl.w - it.ox0);
    let (cin, kh, kw, iw) = (c.cin, c.kh, c.kw, it.iw);
    let pad = c.pad as isize;
    // Transpose input rows oy0 - pad .. and columns ox0 - pad .. (inside the zero border) to
    // t[(r·cin + ci)·iw + col]; columns past the item's are left as they are (their lanes are
    // never stored).
    let in_rows = rows + kh - 1;
    let in_cols = cols + kw - 1;
    let cs = xl.cs;
    for r in 0..in_rows {
        let src = x.offset(xl.offset(it.oy0 as isize + r as isize - pad, it.ox0 as isize - pad));
        let dst = t.as_mut_ptr().add(r * cin * iw);
        // Whole LANES x LANES blocks with the level's shuffles (the scalar moves were 40% of
        // the kernel), then the channel and column tails one float at a time.
        let mut col = 0;
        while col + l <= in_cols {
            let mut ci = 0;
            while ci + l <= cin {
                s.transpose(src.add(col * cs + ci), cs, dst.add(ci * iw + col), iw);
                ci += l;
            }
            for ci in ci..cin {
                for p in col..col + l {
                    *dst.add(ci * iw + p) = *src.add(p * cs + ci);
                }
            }
            col += l;
        }
        for p in col..in_cols {
            for ci in 0..cin {
                *dst.add(ci * iw + p) = *src.add(p * cs + ci);
            }
        }
    }
    let k = kh * kw * cin;
    let tp = t.as_ptr();
    let zero = s.zero();
    let leaky = match it.act {
        Activation::LeakyRelu(a) => s.splat(a),
        _ => zero,
    };
    for r in 0..rows {
        let oy = it.oy0 + r;
        let mut j = 0;
        while j < cols {
            // PV vectors of pixels per pass: PV·CO independent accumulators keep both FMA pipes
            // busy, and each weight broadcast serves PV multiply-adds.
            let mut acc = [[zero; PV]; CO];
            let mut kk = 0;
            for ky in 0..kh {
                for kx in 0..kw {
                    let base = tp.add((r + ky) * cin * iw + j + kx);
                    for ci in 0..cin {
                        let xp = base.add(ci * iw);
                        let xv: [S::V; PV] = std::array::from_fn(|v| s.load(xp.add(v * l)));
                        for (co, a) in acc.iter_mut().enumerate() {
                            // In bounds: co < cout and kk < K, and `w` holds cout·K weights.
                            let wv = s.splat(*c.w.get_unchecked(co * k + kk));
                            for v in 0..PV {
                                a[v] = s.fma(xv[v], wv, a[v]);
                            }
                        }
                        kk += 1;
                    }
                }
            }
            for (co, pair) in acc.iter().enumerate() {
                for (h, &v) in pair.iter().enumerate() {
                    let n = (cols - j).saturating_sub(h * l).min(l);
                    if n == 0 {
                        continue;
                    }
                    let mut val = v;
                    if let Some(b) = &c.bias {
                        val = s.add(val, s.splat(b[co]));
                    }
                    val = match it.act {
                        Activation::None => val,
                        Activation::Relu => s.max(val, zero),
                        Activation::LeakyRelu(_) => s.fma(leaky, s.min(val, zero), s.max(val, zero)),
                        Activation::PRelu => {
                            let sl = s.splat(c.prelu.as_ref().expect("PReLU slopes")[co]);
                            s.fma(sl, s.min(val, zero), s.max(val, zero))
                        }
                    };
                    let ox0 = it.ox0 + j + h * l;
                    // Pixels are channel-strided in NHWC: gather the residuals and scatter the
                    // results through a lane buffer (three values per pixel, cheap next to K).
                    let mut buf = [0.0f32; 16];
                    for (rp, rl, sc) in [it.res, it.res2].into_iter().flatten() {
                        for (i, b) in buf.iter_mut().enumerate().take(n) {
                            *b = *rp.offset(rl.offset(oy as isize, (ox0 + i) as isize)).add(co);
                        }
                        val = s.fma(s.splat(sc), val, s.load(buf.as_ptr()));
                    }
                    s.store(buf.as_mut_ptr(), val);
                    for (i, &b) in buf.iter().enumerate().take(n) {
                        *y.offset(yl.offset(oy as isize, (ox0 + i) as isize)).add(co) = b;
                    }
                }
            }
            j += PV * l;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{reference, Conv2d, ConvAlgo, ConvSpec};
    use crate::kernels::testutil::{act_ref, rand_vec};
    use crate::tensor::Tensor;

    /// Against the f64 reference on every level, and bit for bit against the GEMM path of the
    /// same level (the same K order and epilogue operations).
    fn check(spec: ConvSpec, h: usize, w: usize, act: Activation, residuals: usize) {
        let ConvSpec { cin, cout, .. } = spec;
        let x = rand_vec(h * w * cin, 1, 1.0);
        let wt = rand_vec(cout * spec.k(), 2, 1.0 / (spec.k() as f32).sqrt());
        let bias = rand_vec(cout, 3, 0.1);
        let slopes = rand_vec(cout, 4, 0.3);
        let prelu = (act == Activation::PRelu).then_some(&slopes[..]);
        let (oh, ow) = spec.out_size(h, w).unwrap();
        let r1 = Tensor::from_hwc(oh, ow, cout, 1, &rand_vec(oh * ow * cout, 5, 1.0));
        let r2 = Tensor::from_hwc(oh, ow, cout, 2, &rand_vec(oh * ow * cout, 6, 1.0));
        let conv = reference(&x, h, w, &spec, &wt, Some(&bias));
        let want: Vec<f32> = conv
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let mut v = act_ref(v, act, slopes[i % cout]);
                if residuals >= 1 {
                    v = r1.to_hwc()[i] + 0.5 * v;
                }
                if residuals >= 2 {
                    v = r2.to_hwc()[i] + 0.25 * v;
                }
                v
            })
            .collect();
        let xt = Tensor::from_hwc(h, w, cin, spec.pad.max(1), &x);
        for level in CpuLevel::supported() {
            let mut got = Vec::new();
            for algo in [ConvAlgo::Auto, ConvAlgo::Direct] {
                let c = Conv2d::with_algo(level, spec, &wt, Some(&bias), act, prelu, algo);
                assert_eq!(c.is_thin(), algo == ConvAlgo::Auto, "{spec:?}");
                let mut y = Tensor::zeros(oh, ow, cout, 1);
                let yl = y.layout;
                let res = (residuals >= 1).then(|| (r1.data.as_ptr(), &r1.layout, 0.5));
                let res2 = (residuals >= 2).then(|| (r2.data.as_ptr(), &r2.layout, 0.25));
                // SAFETY: owned tensors of matching geometry; the residuals are separate tensors.
                unsafe { c.run_raw(xt.data.as_ptr(), &xt.layout, y.data.as_mut_ptr(), &yl, res, res2) };
                got.push(y.to_hwc());
            }
            let err = got[0].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 1e-5, "{level} {spec:?} {h}x{w} {act:?}: max error {err}");
            assert!(
                got[0].iter().zip(&got[1]).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{level} {spec:?} {h}x{w} {act:?} res {residuals}: not the GEMM's bits"
            );
        }
    }

    #[test]
    fn matches_reference_and_the_gemm_bits() {
        for (h, w) in [(1, 1), (2, 3), (5, 17), (9, 70), (11, 131)] {
            check(ConvSpec::same(16, 3, 3), h, w, Activation::None, 0);
            check(ConvSpec::same(24, 1, 3), h, w, Activation::Relu, 1);
            check(ConvSpec::same(19, 4, 3), h, w, Activation::LeakyRelu(0.2), 2);
            check(ConvSpec::same(16, 2, 1), h, w, Activation::PRelu, 1);
        }
        // Valid padding and a 5x5 kernel.
        check(ConvSpec { cin: 16, cout: 3, kh: 3, kw: 3, stride: 1, pad: 0 }, 12, 40, Activation::None, 0);
        check(ConvSpec::same(32, 3, 5), 10, 67, Activation::None, 1);
    }
}
