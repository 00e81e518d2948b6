//! Transposed 2-D convolution (PyTorch `ConvTranspose2d`, ncnn `Deconvolution`) over NHWC
//! activations, as a GEMM followed by col2im:
//!
//! 1. GEMM: every input pixel is a row, its `cin` channels are K, and the N columns are the
//!    `k·k·cout` contributions that pixel makes to its `k x k` output footprint (column
//!    `(ky·k + kx)·cout + co`). The input is read in place (rows `cs` floats apart), so a channel
//!    view of a wider buffer works as it does for [`super::conv::Conv2d`].
//! 2. col2im as a *gather*: each output pixel sums the columns of the input pixels whose footprint
//!    covers it, in a fixed tap order (ky, then kx, ascending), then adds the bias and applies the
//!    activation. Gathering instead of scattering keeps rows independent (parallel without atomics)
//!    and makes every output value's summation order independent of tiles and threads.
//!
//! With `k == stride` and no padding (the 2x2 stride-2 up-convolutions of U-Nets) each output
//! pixel has exactly one contributing tap, so there is nothing to sum: B is packed per tap and
//! each tap's GEMM stores its bias-and-activation epilogue straight into the output pixels it
//! covers (rows `k` pixels apart), with no column scratch. That took waifu2x CUNet's 64->64 and
//! 128->128 up-convolutions at 640x360 from 26-28 to 51-62 GFLOP/s on one thread (the scratch
//! pass also took 238 MB there).

use super::gemm::{pad_channels, run_line, Activation, Epilogue, KLayout, Line, Ops, PackedB, SendPtr};
use crate::cpu::CpuLevel;
use crate::tensor::{AlignedVec, Layout, Tensor};
use rayon::prelude::*;

/// Hyper-parameters of a transposed convolution (square kernel, stride and padding, no output
/// padding, no groups, no dilation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeconvSpec {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl DeconvSpec {
    /// `(h - 1)·stride - 2·pad + k` per axis; `None` when that is not positive.
    pub fn out_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let f = |n: usize| -> Option<usize> {
            if n == 0 || self.stride == 0 {
                return None;
            }
            ((n - 1) * self.stride + self.k).checked_sub(2 * self.pad).filter(|&o| o > 0)
        };
        Some((f(h)?, f(w)?))
    }

    /// GEMM columns per input pixel.
    pub fn n(&self) -> usize {
        self.k * self.k * self.cout
    }

    /// Multiply-accumulates for an input of `h x w` pixels.
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        (h * w) as u64 * self.cin as u64 * self.n() as u64
    }

    /// Whether every output pixel has exactly one contributing tap (`k == stride`, no padding),
    /// so that the taps' GEMMs write the output directly (see the module docs).
    pub fn one_tap(&self) -> bool {
        self.k == self.stride && self.pad == 0
    }

    /// Floats of column scratch for an `h x w` input (none where [`DeconvSpec::one_tap`]).
    pub fn scratch_len(&self, h: usize, w: usize) -> usize {
        if self.one_tap() {
            0
        } else {
            h * w * self.n()
        }
    }
}

/// A transposed convolution prepared for one CPU level.
#[derive(Clone, Debug)]
pub struct Deconv2d {
    spec: DeconvSpec,
    level: CpuLevel,
    act: Activation,
    /// B of the GEMM: one of `k·k·cout` columns (col2im), or where [`DeconvSpec::one_tap`] one
    /// per tap (`ky·k + kx`) of `cout` columns.
    b: Vec<PackedB>,
    bias: Vec<f32>,
    /// `bias` padded to the packed width, for the per-tap GEMMs' epilogue.
    tap_bias: AlignedVec,
}

impl Deconv2d {
    /// `weight` is in PyTorch's `ConvTranspose2d` order `[cin][cout][k][k]`; `bias` has `cout`
    /// entries. PReLU is not supported here (no model needs it).
    pub fn new(
        level: CpuLevel,
        spec: DeconvSpec,
        weight: &[f32],
        bias: Option<&[f32]>,
        act: Activation,
    ) -> Self {
        let DeconvSpec { cin, cout, k, .. } = spec;
        assert_eq!(weight.len(), cin * cout * k * k, "transposed conv weight size");
        assert!(act != Activation::PRelu, "PReLU after a transposed conv is not supported");
        let b: Vec<PackedB> = if spec.one_tap() {
            (0..k * k)
                .map(|tap| PackedB::pack(level, cin, cout, |ci, co| weight[(ci * cout + co) * k * k + tap]))
                .collect()
        } else {
            vec![PackedB::pack(level, cin, spec.n(), |ci, n| {
                let co = n % cout;
                let tap = n / cout;
                weight[(ci * cout + co) * k * k + tap]
            })]
        };
        let bias = match bias {
            Some(v) => {
                assert_eq!(v.len(), cout);
                v.to_vec()
            }
            None => vec![0.0; cout],
        };
        let tap_bias = pad_channels(&bias, &b[0]);
        Deconv2d { spec, level, act, b, bias, tap_bias }
    }

    /// Geometry only, for graphs that are planned but never run.
    pub fn shape_only(spec: DeconvSpec, act: Activation) -> Self {
        let b = vec![PackedB::pack(CpuLevel::Portable, 0, 0, |_, _| 0.0)];
        Deconv2d {
            spec,
            level: CpuLevel::Portable,
            act,
            b,
            bias: Vec::new(),
            tap_bias: AlignedVec::new_empty(),
        }
    }

    pub fn spec(&self) -> &DeconvSpec {
        &self.spec
    }

    pub fn level(&self) -> CpuLevel {
        self.level
    }

    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        self.b.iter().map(PackedB::bytes).sum()
    }

    /// Run over raw buffers; `cols` is scratch of at least `spec.scratch_len(xl.h, xl.w)` floats.
    ///
    /// # Safety
    /// `x` valid for `xl.len()` reads, `y` for `yl.len()` writes (pointers address channel 0 of
    /// their views), `cols` for the scratch length; `y` overlaps neither `x` nor `cols`.
    /// `xl.c == cin`, `yl.c == cout` and `yl.h x yl.w` is the output size (checked).
    pub(crate) unsafe fn run_raw(
        &self,
        x: *const f32,
        xl: &Layout,
        y: *mut f32,
        yl: &Layout,
        cols: *mut f32,
    ) {
        let s = &self.spec;
        assert!(
            self.b.len() == if s.one_tap() { s.k * s.k } else { 1 } && self.b[0].k() == s.cin,
            "a shape-only transposed convolution cannot be run"
        );
        assert_eq!(xl.c, s.cin);
        assert_eq!(yl.c, s.cout);
        assert_eq!(s.out_size(xl.h, xl.w), Some((yl.h, yl.w)), "transposed conv output size");
        let kl = KLayout::dense(s.cin);
        let level = self.level;
        if s.one_tap() {
            let ep =
                Epilogue { bias: Some(self.tap_bias.as_slice()), act: self.act, prelu: None, res_scale: 1.0 };
            let ops: Vec<Ops> = self.b.iter().map(|b| Ops::new(b, &kl, &ep)).collect();
            let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
            let k = s.k;
            (0..xl.h).into_par_iter().for_each(|iy| {
                let (xp, yp) = (xp, yp);
                for (tap, o) in ops.iter().enumerate() {
                    let (oy, ox) = (iy * k + tap / k, tap % k);
                    // Input pixel ix covers output pixel (oy, ix·k + ox): its row of the tap's
                    // GEMM is stored there, so C's rows lie k output pixels apart.
                    let line = Line {
                        m: xl.w,
                        a: xp.0.offset(xl.offset(iy as isize, 0)),
                        a_rs: xl.cs as isize,
                        c: yp.0.offset(yl.offset(oy as isize, ox as isize)),
                        c_rs: (k * yl.cs) as isize,
                        res: std::ptr::null(),
                        res_rs: 0,
                        res2: std::ptr::null(),
                        res2_rs: 0,
                    };
                    run_line(level, &line, o, 0..o.b.panels());
                }
            });
            return;
        }
        let n = s.n();
        let ops = Ops::new(&self.b[0], &kl, &Epilogue::NONE);
        let (xp, cp) = (SendPtr(x as *mut f32), SendPtr(cols));
        let panels = self.b[0].panels();
        let w = xl.w;
        (0..xl.h).into_par_iter().for_each(|iy| {
            let (xp, cp) = (xp, cp);
            let line = Line {
                m: w,
                a: xp.0.offset(xl.offset(iy as isize, 0)),
                a_rs: xl.cs as isize,
                c: cp.0.add(iy * w * n),
                c_rs: n as isize,
                res: std::ptr::null(),
                res_rs: 0,
                res2: std::ptr::null(),
                res2_rs: 0,
            };
            run_line(level, &line, &ops, 0..panels);
        });
        let cols = std::slice::from_raw_parts(cols as *const f32, s.scratch_len(xl.h, xl.w));
        let yp = SendPtr(y);
        (0..yl.h).into_par_iter().for_each(|oy| {
            let row = yp.get().offset(yl.offset(oy as isize, 0));
            gather_row(s, cols, xl.h, xl.w, oy, yl.w, &self.bias, self.act, |ox| row.add(ox * yl.cs));
        });
    }

    /// Safe wrapper over owned tensors (allocates the scratch).
    pub fn forward(&self, x: &Tensor, out_pad: usize) -> Tensor {
        let (oh, ow) = self.spec.out_size(x.layout.h, x.layout.w).expect("input too small");
        let mut y = Tensor::zeros(oh, ow, self.spec.cout, out_pad);
        let mut cols = vec![0.0f32; self.spec.scratch_len(x.layout.h, x.layout.w)];
        let yl = y.layout;
        // SAFETY: owned, distinct buffers of the sizes their layouts and the scratch need.
        unsafe { self.run_raw(x.data.as_ptr(), &x.layout, y.data.as_mut_ptr(), &yl, cols.as_mut_ptr()) };
        y
    }
}

/// Input index `i` of the tap `t` that reaches output `o`, if any: `o = i·stride - pad + t`.
#[inline]
fn source(o: usize, t: usize, s: &DeconvSpec, n_in: usize) -> Option<usize> {
    let v = (o + s.pad).checked_sub(t)?;
    (v % s.stride == 0 && v / s.stride < n_in).then_some(v / s.stride)
}

/// Sum the columns reaching each pixel of output row `oy`, then bias and activation.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn gather_row(
    s: &DeconvSpec,
    cols: &[f32],
    h: usize,
    w: usize,
    oy: usize,
    ow: usize,
    bias: &[f32],
    act: Activation,
    out: impl Fn(usize) -> *mut f32,
) {
    let (k, cout, n) = (s.k, s.cout, s.n());
    let mut acc = vec![0.0f32; cout];
    for ox in 0..ow {
        acc.fill(0.0);
        for ky in 0..k {
            let Some(iy) = source(oy, ky, s, h) else { continue };
            for kx in 0..k {
                let Some(ix) = source(ox, kx, s, w) else { continue };
                let c = &cols[(iy * w + ix) * n + (ky * k + kx) * cout..][..cout];
                for (a, v) in acc.iter_mut().zip(c) {
                    *a += v;
                }
            }
        }
        let dst = std::slice::from_raw_parts_mut(out(ox), cout);
        for ((d, a), b) in dst.iter_mut().zip(&acc).zip(bias) {
            let v = a + b;
            *d = match act {
                Activation::None => v,
                Activation::Relu => v.max(0.0),
                Activation::LeakyRelu(slope) => {
                    if v > 0.0 {
                        v
                    } else {
                        v * slope
                    }
                }
                Activation::PRelu => unreachable!("rejected in Deconv2d::new"),
            };
        }
    }
}

/// Scalar reference over dense HWC data (f64 accumulation, scatter form, PyTorch weight order).
pub fn reference(
    x: &[f32],
    h: usize,
    w: usize,
    spec: &DeconvSpec,
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (oh, ow) = spec.out_size(h, w).expect("input too small");
    let DeconvSpec { cin, cout, k, stride, pad } = *spec;
    let mut y = vec![0.0f64; oh * ow * cout];
    for iy in 0..h {
        for ix in 0..w {
            for ky in 0..k {
                let oy = (iy * stride + ky) as isize - pad as isize;
                if oy < 0 || oy >= oh as isize {
                    continue;
                }
                for kx in 0..k {
                    let ox = (ix * stride + kx) as isize - pad as isize;
                    if ox < 0 || ox >= ow as isize {
                        continue;
                    }
                    for co in 0..cout {
                        let mut acc = 0.0f64;
                        for ci in 0..cin {
                            acc += x[(iy * w + ix) * cin + ci] as f64
                                * weight[((ci * cout + co) * k + ky) * k + kx] as f64;
                        }
                        y[(oy as usize * ow + ox as usize) * cout + co] += acc;
                    }
                }
            }
        }
    }
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[i % cout] as f64;
        }
    }
    y.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_add(0x9E3779B97F4A7C15);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn check(spec: DeconvSpec, h: usize, w: usize, act: Activation, view: bool) {
        let x = rand_vec(h * w * spec.cin, 1);
        let wt = rand_vec(spec.cin * spec.cout * spec.k * spec.k, 2);
        let bias = rand_vec(spec.cout, 3);
        let mut want = reference(&x, h, w, &spec, &wt, Some(&bias));
        for v in &mut want {
            match act {
                Activation::LeakyRelu(s) if *v < 0.0 => *v *= s,
                Activation::Relu => *v = v.max(0.0),
                _ => {}
            }
        }
        for level in CpuLevel::supported() {
            let d = Deconv2d::new(level, spec, &wt, Some(&bias), act);
            let got = if view {
                // Read channels 0..cin of a wider buffer and write channels 2..2+cout of another.
                let wide = spec.cin + 3;
                let xw: Vec<f32> =
                    x.chunks(spec.cin).flat_map(|p| p.iter().copied().chain([5.0; 3])).collect();
                let xt = Tensor::from_hwc(h, w, wide, 1, &xw);
                let (oh, ow) = spec.out_size(h, w).unwrap();
                let mut yt = Tensor::zeros(oh, ow, spec.cout + 4, 1);
                yt.data.as_mut_slice().fill(-7.0);
                let mut cols = vec![0.0; spec.scratch_len(h, w)];
                let xl = Layout { c: spec.cin, ..xt.layout };
                let yl = Layout { c: spec.cout, ..yt.layout };
                // SAFETY: views inside owned buffers; channel offset 2 + cout <= cout + 4.
                unsafe {
                    d.run_raw(xt.data.as_ptr(), &xl, yt.data.as_mut_ptr().add(2), &yl, cols.as_mut_ptr())
                };
                let all = yt.to_hwc();
                let c = spec.cout + 4;
                for p in all.chunks(c) {
                    assert!(
                        p[..2].iter().chain(&p[2 + spec.cout..]).all(|&v| v == -7.0),
                        "{level}: wrote outside the view"
                    );
                }
                all.chunks(c).flat_map(|p| p[2..2 + spec.cout].to_vec()).collect()
            } else {
                d.forward(&Tensor::from_hwc(h, w, spec.cin, 0, &x), 1).to_hwc()
            };
            assert_eq!(got.len(), want.len());
            let tol = 3e-5 * ((spec.cin * spec.k) as f32).sqrt();
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert!((g - r).abs() <= tol, "{level} {spec:?} {h}x{w}: [{i}] {g} vs {r}");
            }
        }
    }

    #[test]
    fn waifu2x_shapes_and_tails() {
        for (h, w) in [(1, 1), (2, 3), (5, 7), (9, 4), (13, 17)] {
            // UpConv7 / UpCUNet output layer: k4 s2 p3 (overlapping taps).
            if (DeconvSpec { cin: 8, cout: 3, k: 4, stride: 2, pad: 3 }).out_size(h, w).is_some() {
                check(DeconvSpec { cin: 8, cout: 3, k: 4, stride: 2, pad: 3 }, h, w, Activation::None, false);
            }
            // U-Net up-convolution: k2 s2 p0 (one tap per output pixel).
            check(
                DeconvSpec { cin: 16, cout: 19, k: 2, stride: 2, pad: 0 },
                h,
                w,
                Activation::LeakyRelu(0.1),
                false,
            );
            // The same through channel views, and a width of whole GEMM panels (CUNet's 64->64).
            check(DeconvSpec { cin: 16, cout: 19, k: 2, stride: 2, pad: 0 }, h, w, Activation::Relu, true);
            check(
                DeconvSpec { cin: 64, cout: 64, k: 2, stride: 2, pad: 0 },
                h,
                w,
                Activation::LeakyRelu(0.1),
                true,
            );
            check(DeconvSpec { cin: 5, cout: 4, k: 3, stride: 1, pad: 1 }, h, w, Activation::None, true);
            check(
                DeconvSpec { cin: 7, cout: 9, k: 3, stride: 2, pad: 0 },
                h,
                w,
                Activation::LeakyRelu(0.2),
                true,
            );
        }
    }

    #[test]
    fn output_sizes() {
        let s = DeconvSpec { cin: 1, cout: 1, k: 4, stride: 2, pad: 3 };
        assert_eq!(s.out_size(1, 1), None);
        assert_eq!(s.out_size(3, 10), Some((2, 16)));
        let u = DeconvSpec { cin: 1, cout: 1, k: 2, stride: 2, pad: 0 };
        assert_eq!(u.out_size(5, 1), Some((10, 2)));
        assert_eq!(u.out_size(0, 1), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]
        #[test]
        fn random_shapes(h in 1usize..9, w in 1usize..12, cin in 1usize..20, cout in 1usize..20,
                         k in 1usize..5, stride in 1usize..4, pad in 0usize..3, view: bool) {
            let spec = DeconvSpec { cin, cout, k, stride, pad };
            if spec.out_size(h, w).is_some() {
                check(spec, h, w, Activation::LeakyRelu(0.1), view);
            }
        }
    }
}
