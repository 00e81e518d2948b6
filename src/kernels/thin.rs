//! Stride-1 convolutions with at most four output channels: the RGB (or grey) output layer of
//! most models, 64 -> 3 at the output resolution. The GEMM puts output channels in the vector
//! lanes, so three channels fill 3 of a panel's 16 (AVX2) columns and Winograd transforms every
//! input channel for three outputs; here the lanes hold input channels instead, read in place
//! from the NHWC activation: a few pixels at a time, each weight vector loaded once serves all
//! of them, every lane accumulates its channels' terms over the taps, and the lanes are summed
//! at the end (a transpose and adds, in a fixed order). Every pixel takes the same operations
//! wherever it lies, so tiled output equals untiled output bit for bit.
//!
//! An earlier form held pixels in the lanes and needed the input transposed to channel-major
//! order first: the transpose's strided loads and the K loop's L1 misses held it to 36-38
//! GFLOP/s on one Zen 3 core (64 -> 3 at 1280x720), a third of the FMA rate.

use super::gemm::{Activation, SendPtr};
use super::simd::Simd;
use crate::cpu::CpuLevel;
use crate::tensor::Layout;
use rayon::prelude::*;

/// Most output channels this kernel takes.
pub const MAX_COUT: usize = 4;

/// Output rows and columns per work item: the item's input, `(ROWS + kh - 1)` rows of
/// `COLS + kw - 1` pixels (170 KiB at 64 channels and 3x3), stays in L2 while each of its rows
/// serves `kh` output rows.
const ROWS: usize = 8;
const COLS: usize = 64;

/// Weight rows are padded with zeros to a multiple of this many channels, a multiple of every
/// level's lane count.
const CPAD: usize = 16;

/// Weights and epilogue of a thin convolution.
#[derive(Clone, Debug)]
pub struct ThinConv {
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    /// Channels per weight row: `cin` rounded up to [`CPAD`].
    cpad: usize,
    /// `w[(co·taps + t)·cpad + ci]` for tap `t = ky·kw + kx`, zero for `ci >= cin`.
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
        let taps = kh * kw;
        let cpad = cin.div_ceil(CPAD) * CPAD;
        let mut w = vec![0.0; cout * taps * cpad];
        for co in 0..cout {
            for t in 0..taps {
                for ci in 0..cin {
                    w[(co * taps + t) * cpad + ci] = weight[(co * cin + ci) * taps + t];
                }
            }
        }
        ThinConv {
            cin,
            cout,
            kh,
            kw,
            pad,
            cpad,
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
        self.run_items(x, xl, y, yl, ep, |item, x, y| dispatch(level, self, item, x, y));
    }

    /// The work items of [`ThinConv::run_raw`], each run by `body` (the level's kernel).
    ///
    /// # Safety
    /// As [`ThinConv::run_raw`]; `body` runs one item of this layer over `x` into `y`.
    unsafe fn run_items(
        &self,
        x: *const f32,
        xl: &Layout,
        y: *mut f32,
        yl: &Layout,
        ep: ThinEpilogue,
        body: impl Fn(&Item, *const f32, *mut f32) + Sync,
    ) {
        assert!(xl.pad >= self.pad, "thin convolution input needs a border of {}", self.pad);
        let (row_items, col_items) = (yl.h.div_ceil(ROWS), yl.w.div_ceil(COLS));
        let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
        let r1 = ep.res.map(|(p, l, s)| (SendPtr(p as *mut f32), *l, s));
        let r2 = ep.res2.map(|(p, l, s)| (SendPtr(p as *mut f32), *l, s));
        let (xl, yl, act) = (*xl, *yl, ep.act);
        (0..row_items * col_items).into_par_iter().for_each(|item| {
            let (xp, yp) = (xp, yp);
            let res = r1.map(|(p, l, s)| (p.0 as *const f32, l, s));
            let res2 = r2.map(|(p, l, s)| (p.0 as *const f32, l, s));
            let item = Item {
                oy0: (item / col_items) * ROWS,
                ox0: (item % col_items) * COLS,
                xl,
                yl,
                act,
                res,
                res2,
            };
            body(&item, xp.0, yp.0);
        });
    }
}

/// One work item: output rows `oy0..oy0 + ROWS`, columns `ox0..ox0 + COLS` (clipped).
struct Item {
    oy0: usize,
    ox0: usize,
    xl: Layout,
    yl: Layout,
    act: Activation,
    res: Option<(*const f32, Layout, f32)>,
    res2: Option<(*const f32, Layout, f32)>,
}

crate::kernels::simd::simd_dispatch! {
    /// # Safety
    /// As [`ThinConv::run_raw`], for one item.
    fn dispatch(c: &ThinConv, it: &Item, x: *const f32, y: *mut f32) = item_simd;
}

/// Pixels per pass for each output count: `CO·P <= 12` accumulators, plus the `CO` weight
/// vectors and one input vector, fit AVX2's 16 registers.
#[inline(always)]
unsafe fn item_simd<S: Simd>(s: S, c: &ThinConv, it: &Item, x: *const f32, y: *mut f32) {
    match c.cout {
        1 => item_co::<S, 1, 8>(s, c, it, x, y),
        2 => item_co::<S, 2, 6>(s, c, it, x, y),
        3 => item_co::<S, 3, 4>(s, c, it, x, y),
        _ => item_co::<S, 4, 3>(s, c, it, x, y),
    }
}

/// Most lanes of any level, and so of rows in the lane-sum buffer (`CO·P <= 12`, rounded up
/// to whole `LANES x LANES` blocks).
const MAX_LANES: usize = 16;

#[inline(always)]
unsafe fn item_co<S: Simd, const CO: usize, const P: usize>(
    s: S,
    c: &ThinConv,
    it: &Item,
    x: *const f32,
    y: *mut f32,
) {
    let l = S::LANES;
    debug_assert!(CPAD.is_multiple_of(l) && l <= MAX_LANES && CO * P <= MAX_LANES);
    let (xl, yl) = (&it.xl, &it.yl);
    let rows = ROWS.min(yl.h - it.oy0);
    let cols = COLS.min(yl.w - it.ox0);
    let (cin, kw, taps, cpad) = (c.cin, c.kw, c.kh * c.kw, c.cpad);
    let (full, tail) = (cin / l, cin % l);
    let pad = c.pad as isize;
    let (cs, rs) = (xl.cs, xl.row_stride());
    let wp = c.w.as_ptr();
    let zero = s.zero();
    let blocks = (CO * P).div_ceil(l);
    let mut lanes = [0.0f32; MAX_LANES * MAX_LANES];
    let mut tr = [0.0f32; MAX_LANES * MAX_LANES];
    let mut sums = [0.0f32; MAX_LANES];
    // A layer without bias adds zeros.
    let bias: [f32; CO] = std::array::from_fn(|co| c.bias.as_ref().map_or(0.0, |b| b[co]));
    let slopes: [f32; CO] = std::array::from_fn(|co| c.prelu.as_ref().map_or(0.0, |p| p[co]));
    for r in 0..rows {
        let oy = it.oy0 + r;
        let mut j = 0;
        while j < cols {
            let n = P.min(cols - j);
            // Past the item's last pixel, a pass repeats it (computed, never stored).
            let base: [*const f32; P] = std::array::from_fn(|p| {
                let ox = it.ox0 + j + p.min(n - 1);
                x.offset(xl.offset(oy as isize - pad, ox as isize - pad))
            });
            // The input columns that the next pass reads first, one pass ahead: without this the
            // first load of each new column waited on L2 or memory.
            for ky in 0..c.kh {
                let row = x.wrapping_offset(xl.offset(oy as isize - pad + ky as isize, 0));
                for q in 0..P {
                    let col = (it.ox0 + j + P + kw - 1 + q) as isize - pad;
                    s.prefetch_floats(row.wrapping_offset(col * cs as isize), cin);
                }
            }
            let mut acc = [[zero; P]; CO];
            for t in 0..taps {
                let (ky, kx) = (t / kw, t % kw);
                let at = ky * rs + kx * cs;
                let wt = wp.add(t * cpad);
                for cv in 0..full {
                    // In bounds: co < cout, t < taps and cv·l + l <= cpad.
                    let wv: [S::V; CO] = std::array::from_fn(|co| s.load(wt.add(co * taps * cpad + cv * l)));
                    for p in 0..P {
                        let xv = s.load(base[p].add(at + cv * l));
                        for co in 0..CO {
                            acc[co][p] = s.fma(xv, wv[co], acc[co][p]);
                        }
                    }
                }
                if tail > 0 {
                    let wv: [S::V; CO] =
                        std::array::from_fn(|co| s.load(wt.add(co * taps * cpad + full * l)));
                    for p in 0..P {
                        let xv = s.load_part(base[p].add(at + full * l), tail);
                        for co in 0..CO {
                            acc[co][p] = s.fma(xv, wv[co], acc[co][p]);
                        }
                    }
                }
            }
            // Lane sums: accumulator `co·P + p` becomes a row, blocks of rows are transposed
            // and their rows added in order.
            for (co, a) in acc.iter().enumerate() {
                for (p, &v) in a.iter().enumerate() {
                    s.store(lanes.as_mut_ptr().add((co * P + p) * l), v);
                }
            }
            for b in 0..blocks {
                s.transpose(lanes.as_ptr().add(b * l * l), l, tr.as_mut_ptr(), l);
                let mut v = s.load(tr.as_ptr());
                for i in 1..l {
                    v = s.add(v, s.load(tr.as_ptr().add(i * l)));
                }
                s.store(sums.as_mut_ptr().add(b * l), v);
            }
            for p in 0..n {
                let ox = (it.ox0 + j + p) as isize;
                let yp = y.offset(yl.offset(oy as isize, ox));
                let r1 = it.res.map(|(rp, rl, sc)| (rp.offset(rl.offset(oy as isize, ox)), sc));
                let r2 = it.res2.map(|(rp, rl, sc)| (rp.offset(rl.offset(oy as isize, ox)), sc));
                for co in 0..CO {
                    let mut v = sums[co * P + p] + bias[co];
                    v = match it.act {
                        Activation::None => v,
                        Activation::Relu => v.max(0.0),
                        Activation::LeakyRelu(a) => a.mul_add(v.min(0.0), v.max(0.0)),
                        Activation::PRelu => slopes[co].mul_add(v.min(0.0), v.max(0.0)),
                    };
                    if let Some((rp, sc)) = r1 {
                        v = sc.mul_add(v, *rp.add(co));
                    }
                    if let Some((rp, sc)) = r2 {
                        v = sc.mul_add(v, *rp.add(co));
                    }
                    *yp.add(co) = v;
                }
            }
            j += P;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{reference, Conv2d, ConvAlgo, ConvSpec};
    use crate::kernels::simd::emu::{Emu16, Emu4};
    use crate::kernels::testutil::{act_ref, rand_vec};
    use crate::tensor::Tensor;

    /// Against the f64 reference on every level, and the same as the GEMM path to fp32
    /// rounding.
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
        // The AVX-512 and NEON lane counts (channel tails, lane sums of 16 and 4), on any host.
        let thin = ThinConv::new(cin, cout, spec.kh, spec.kw, spec.pad, &wt, Some(&bias), prelu);
        for lanes in [16, 4] {
            let mut y = Tensor::zeros(oh, ow, cout, 1);
            let yl = y.layout;
            let ep = ThinEpilogue {
                act,
                res: (residuals >= 1).then(|| (r1.data.as_ptr(), &r1.layout, 0.5)),
                res2: (residuals >= 2).then(|| (r2.data.as_ptr(), &r2.layout, 0.25)),
            };
            // SAFETY: owned tensors of matching geometry; the residuals are separate tensors.
            unsafe {
                thin.run_items(xt.data.as_ptr(), &xt.layout, y.data.as_mut_ptr(), &yl, ep, |it, x, y| {
                    if lanes == 16 {
                        item_simd(Emu16::default(), &thin, it, x, y)
                    } else {
                        item_simd(Emu4::default(), &thin, it, x, y)
                    }
                })
            };
            let err = y.to_hwc().iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 1e-5, "{lanes} emulated lanes {spec:?} {h}x{w} {act:?}: max error {err}");
        }
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
            let gap = got[0].iter().zip(&got[1]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(gap < 1e-5, "{level} {spec:?} {h}x{w} {act:?} res {residuals}: {gap} from the GEMM path");
        }
    }

    /// A pixel's value does not depend on where it lies in the map or in its pass of pixels:
    /// the output of a crop equals the whole map's output over the crop's interior, bit for bit.
    #[test]
    fn crops_give_the_same_bits() {
        let (h, w, cin) = (13, 150, 19);
        let spec = ConvSpec::same(cin, 3, 3);
        let x = rand_vec(h * w * cin, 7, 1.0);
        let wt = rand_vec(3 * spec.k(), 8, 0.2);
        let bias = rand_vec(3, 9, 0.1);
        let (y0, x0, ch, cw) = (3, 7, 9, 101);
        let crop: Vec<f32> = (0..ch)
            .flat_map(|r| x[((y0 + r) * w + x0) * cin..((y0 + r) * w + x0 + cw) * cin].to_vec())
            .collect();
        for level in CpuLevel::supported() {
            let c = Conv2d::with_algo(level, spec, &wt, Some(&bias), Activation::Relu, None, ConvAlgo::Auto);
            assert!(c.is_thin());
            let whole = c.forward(&Tensor::from_hwc(h, w, cin, 1, &x), 0).to_hwc();
            let part = c.forward(&Tensor::from_hwc(ch, cw, cin, 1, &crop), 0).to_hwc();
            for r in 1..ch - 1 {
                for q in 1..cw - 1 {
                    for co in 0..3 {
                        let a = whole[((y0 + r) * w + x0 + q) * 3 + co];
                        let b = part[(r * cw + q) * 3 + co];
                        assert_eq!(a.to_bits(), b.to_bits(), "{level} pixel ({r}, {q}) channel {co}");
                    }
                }
            }
        }
    }

    #[test]
    fn matches_reference_and_the_gemm_path() {
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
