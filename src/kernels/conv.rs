//! 2-D convolution over NHWC activations with a zero border, as a GEMM whose A operand is the
//! implicit im2col of the input: output pixels are GEMM rows, `(ky, kx, cin)` is K, output channels
//! are N. The weights are packed once; bias, activation and residual are fused into the epilogue.
//!
//! Every output value is accumulated over K in the same order whatever the image size, tile
//! position or thread count, so tiled and untiled runs agree bit for bit.

use super::bf16::{amx_available, Bf16Conv};
use super::gemm::{pad_channels, run_line, Activation, Epilogue, KLayout, Line, Ops, PackedB, SendPtr};
use super::thin::{ThinConv, ThinEpilogue};
use super::winograd::WinogradConv;
use crate::cpu::CpuLevel;
use crate::tensor::{AlignedVec, Layout, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Hyper-parameters of a convolution (square stride and symmetric padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvSpec {
    /// A `k x k` stride-1 convolution with "same" padding.
    pub fn same(cin: usize, cout: usize, k: usize) -> Self {
        ConvSpec { cin, cout, kh: k, kw: k, stride: 1, pad: k / 2 }
    }

    /// Output size for an `h x w` input, `None` if the kernel does not fit.
    pub fn out_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let hp = h + 2 * self.pad;
        let wp = w + 2 * self.pad;
        if hp < self.kh || wp < self.kw || self.stride == 0 {
            return None;
        }
        Some(((hp - self.kh) / self.stride + 1, (wp - self.kw) / self.stride + 1))
    }

    pub fn k(&self) -> usize {
        self.kh * self.kw * self.cin
    }

    /// Multiply-accumulates for an output of `oh x ow`.
    pub fn macs(&self, oh: usize, ow: usize) -> u64 {
        (oh * ow) as u64 * self.k() as u64 * self.cout as u64
    }
}

/// How 3x3 stride-1 convolutions are computed.
///
/// `Direct` is the implicit-im2col GEMM for every layer: each output sums its products in one
/// fixed order, so results do not depend on tiling. `Auto` runs the layers where it is faster
/// (3x3, stride 1, enough channels; 5x5 "same") through Winograd ([`WinogradConv`]: F(6x6, 3x3)
/// with at least 32 channels in and out, else F(4x4, 3x3); F(4x4, 5x5)): 4-6x fewer
/// multiply-adds, with an fp32 error of the order of 1e-6 to 1e-5 relative to the direct sum,
/// which also makes a pixel's rounding depend on its position in the output tile grid (so tiled
/// and untiled results agree to that error, not bit for bit), and 4x (F4), 7x (F6) or 2.6x
/// (5x5) the weight memory of those layers.
///
/// `Winograd` forces it on every such layer whatever its channels (for tests and
/// measurements).
///
/// `Bf16` (`--precision bf16`) is `Auto` except that, where the CPU has AMX-BF16, the stride-1
/// "same" convolutions with at least 16 channels in and out run as direct sums of bf16 operands
/// in fp32 ([`Bf16Conv`]), with the operands' 8-bit significands as the error. Elsewhere it is
/// `Auto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvAlgo {
    Direct,
    #[default]
    Auto,
    Winograd,
    Bf16,
}

impl ConvAlgo {
    /// `SUPERRES_CONV=direct|auto|winograd` (unset or empty: `Auto`); anything else is an error so a typo
    /// in a benchmark script is not silently ignored.
    pub fn from_env() -> Result<ConvAlgo, String> {
        match std::env::var("SUPERRES_CONV") {
            Err(_) => Ok(ConvAlgo::Auto),
            Ok(v) => v.parse(),
        }
    }

    /// Whether a layer of this geometry runs through the thin-output kernel ([`ThinConv`]): in
    /// `Auto`, stride-1 layers with at most four outputs and enough inputs (the image output
    /// layers). It sums each output in its own order (channels in lanes, then across lanes), the
    /// same wherever the pixel lies, so tiles still give the untiled bits; `Direct` keeps the
    /// GEMM's order, the one the tiling guarantee of `--conv direct` is stated for.
    pub fn thin_for(self, spec: &ConvSpec) -> bool {
        matches!(self, ConvAlgo::Auto | ConvAlgo::Bf16)
            && spec.stride == 1
            && spec.cout <= super::thin::MAX_COUT
            && spec.cin >= WINOGRAD_MIN_CHANNELS
    }

    /// Whether a layer of this geometry runs through Winograd.
    pub fn winograd_for(self, spec: &ConvSpec) -> bool {
        // 3x3 same or valid (F(4x4) / F(6x6)), or 5x5 same (F(4x4, 5x5)).
        let fits = spec.kh == spec.kw
            && spec.stride == 1
            && ((spec.kh == 3 && spec.pad <= 1) || (spec.kh == 5 && spec.pad == 2));
        // The transforms cost per input channel; few output channels (a network's last layer, 3)
        // waste the same padded GEMM lanes in both algorithms, so only the input side decides.
        let pays = spec.cin >= WINOGRAD_MIN_CHANNELS;
        match self {
            ConvAlgo::Direct => false,
            ConvAlgo::Auto | ConvAlgo::Bf16 => fits && pays && !self.thin_for(spec),
            ConvAlgo::Winograd => fits,
        }
    }

    /// Whether networks built for `level` with this choice run any layer in bf16.
    pub fn bf16_active(self, level: CpuLevel) -> bool {
        self == ConvAlgo::Bf16 && amx_available(level)
    }

    /// Whether a layer of this geometry built for `level` runs in bf16 on AMX (this is checked
    /// before [`ConvAlgo::winograd_for`]).
    pub fn bf16_for(self, level: CpuLevel, spec: &ConvSpec) -> bool {
        self.bf16_active(level) && !self.thin_for(spec) && Bf16Conv::fits(spec)
    }
}

/// Below this many input channels the transforms cost more than the multiply-adds they save
/// (measured with `cargo bench --bench conv -- winograd`; with 64 in and 3 out, the last layer of
/// most models, Winograd took 18.4 ms against 25.8 ms direct on two threads).
const WINOGRAD_MIN_CHANNELS: usize = 16;

impl std::str::FromStr for ConvAlgo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "auto" => Ok(ConvAlgo::Auto),
            "direct" => Ok(ConvAlgo::Direct),
            "winograd" => Ok(ConvAlgo::Winograd),
            other => {
                Err(format!("unknown convolution algorithm '{other}' (expected auto, direct or winograd)"))
            }
        }
    }
}

impl std::fmt::Display for ConvAlgo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConvAlgo::Direct => "direct",
            ConvAlgo::Auto => "auto",
            ConvAlgo::Winograd => "winograd",
            ConvAlgo::Bf16 => "bf16",
        })
    }
}

/// A convolution prepared for one CPU level: packed weights and padded per-channel vectors. The
/// weights are shared, so a clone (the same layer applied to several frames) costs nothing.
#[derive(Clone, Debug)]
pub struct Conv2d {
    spec: ConvSpec,
    level: CpuLevel,
    act: Activation,
    w: Arc<Weights>,
}

#[derive(Debug)]
enum Weights {
    Direct {
        b: PackedB,
        bias: Option<AlignedVec>,
        prelu: Option<AlignedVec>,
    },
    Winograd(WinogradConv),
    /// At most four outputs, input channels in the lanes ([`ThinConv`]).
    Thin(ThinConv),
    /// bf16 operands on AMX tiles ([`Bf16Conv`]).
    Bf16(Bf16Conv),
    /// Geometry only (planning).
    None,
}

impl Conv2d {
    /// `weight` is OIHW (PyTorch order), `bias` has `cout` entries, `prelu` has `cout` slopes and
    /// is required exactly when `act` is [`Activation::PRelu`].
    pub fn new(
        level: CpuLevel,
        spec: ConvSpec,
        weight: &[f32],
        bias: Option<&[f32]>,
        act: Activation,
        prelu: Option<&[f32]>,
    ) -> Self {
        Self::with_algo(level, spec, weight, bias, act, prelu, ConvAlgo::Direct)
    }

    /// As [`Conv2d::new`], through Winograd where `algo` picks it for this geometry.
    pub fn with_algo(
        level: CpuLevel,
        spec: ConvSpec,
        weight: &[f32],
        bias: Option<&[f32]>,
        act: Activation,
        prelu: Option<&[f32]>,
        algo: ConvAlgo,
    ) -> Self {
        let ConvSpec { cin, cout, kh, kw, .. } = spec;
        assert_eq!(weight.len(), cout * cin * kh * kw, "weight size");
        assert_eq!(act == Activation::PRelu, prelu.is_some(), "PReLU slopes iff PReLU activation");
        for v in [bias, prelu].into_iter().flatten() {
            assert_eq!(v.len(), cout);
        }
        if algo.thin_for(&spec) {
            let t = ThinConv::new(cin, cout, kh, kw, spec.pad, weight, bias, prelu);
            return Conv2d { spec, level, act, w: Arc::new(Weights::Thin(t)) };
        }
        if algo.bf16_for(level, &spec) {
            let w = Bf16Conv::new(level, &spec, weight, bias, prelu);
            return Conv2d { spec, level, act, w: Arc::new(Weights::Bf16(w)) };
        }
        if algo.winograd_for(&spec) {
            let w = WinogradConv::new(level, cin, cout, weight, bias, prelu);
            return Conv2d { spec, level, act, w: Arc::new(Weights::Winograd(w)) };
        }
        let b = PackedB::pack(level, spec.k(), cout, |k, o| {
            // K is ordered (ky, kx, ci) to match the NHWC neighbourhood.
            let ci = k % cin;
            let kx = (k / cin) % kw;
            let ky = k / (cin * kw);
            weight[((o * cin + ci) * kh + ky) * kw + kx]
        });
        let bias = bias.map(|v| pad_channels(v, &b));
        let prelu = prelu.map(|v| pad_channels(v, &b));
        Conv2d { spec, level, act, w: Arc::new(Weights::Direct { b, bias, prelu }) }
    }

    /// The same weights with another activation (PReLU needs slopes, so it cannot be chosen here).
    pub fn with_act(&self, act: Activation) -> Self {
        let has_slopes = match &*self.w {
            Weights::Direct { prelu, .. } => prelu.is_some(),
            Weights::Winograd(w) => w.has_prelu(),
            Weights::Thin(t) => t.has_prelu(),
            Weights::Bf16(b) => b.has_prelu(),
            Weights::None => true,
        };
        assert!(act != Activation::PRelu || has_slopes, "PReLU needs slopes");
        Conv2d { act, ..self.clone() }
    }

    /// A convolution with its geometry but no weights, for planning graphs that are never run.
    pub fn shape_only(spec: ConvSpec, act: Activation) -> Self {
        Conv2d { spec, level: CpuLevel::Portable, act, w: Arc::new(Weights::None) }
    }

    pub fn spec(&self) -> &ConvSpec {
        &self.spec
    }

    pub fn level(&self) -> CpuLevel {
        self.level
    }

    /// Whether this layer runs through Winograd.
    pub fn is_winograd(&self) -> bool {
        matches!(*self.w, Weights::Winograd(_))
    }

    /// Whether this layer runs in bf16 on AMX.
    pub fn is_bf16(&self) -> bool {
        matches!(*self.w, Weights::Bf16(_))
    }

    /// Whether this layer runs through the thin-output kernel.
    pub fn is_thin(&self) -> bool {
        matches!(*self.w, Weights::Thin(_))
    }

    /// The packed weights and the epilogue (bias, activation, PReLU slopes), for kernels that feed
    /// the same GEMM from another im2col (deformable convolution). Panics for a Winograd or
    /// shape-only layer (those kernels build theirs with [`Conv2d::new`]).
    pub(crate) fn gemm_parts(&self, res_scale: f32) -> (&PackedB, Epilogue<'_>) {
        let Weights::Direct { b, bias, prelu } = &*self.w else {
            panic!("gemm_parts of a convolution without direct weights")
        };
        let ep = Epilogue {
            bias: bias.as_ref().map(|b| b.as_slice()),
            act: self.act,
            prelu: prelu.as_ref().map(|p| p.as_slice()),
            res_scale,
        };
        (b, ep)
    }

    /// Bytes of prepared weights.
    pub fn bytes(&self) -> usize {
        match &*self.w {
            Weights::Direct { b, .. } => b.bytes(),
            Weights::Winograd(w) => w.bytes(),
            Weights::Thin(t) => t.bytes(),
            Weights::Bf16(b) => b.bytes(),
            Weights::None => 0,
        }
    }

    /// K layout of the implicit im2col for an input of layout `xl`.
    fn k_layout(&self, xl: &Layout) -> KLayout {
        let s = &self.spec;
        let rs = xl.row_stride() as isize;
        let cs = xl.cs as isize;
        if xl.cs == s.cin {
            // Taps of one kernel row are contiguous: one segment per kernel row.
            KLayout { seg_offsets: (0..s.kh).map(|ky| ky as isize * rs).collect(), seg_len: s.kw * s.cin }
        } else {
            let offs = (0..s.kh).flat_map(|ky| (0..s.kw).map(move |kx| ky as isize * rs + kx as isize * cs));
            KLayout { seg_offsets: offs.collect(), seg_len: s.cin }
        }
    }

    /// `y = pixel_shuffle(act(conv(x) + bias), r)` written straight from the convolution, for
    /// layers where [`Conv2d::writes_shuffled`] holds (outputs stored in the grouped order).
    ///
    /// # Safety
    /// As [`Conv2d::run_raw`], with `yl` the shuffled output's layout.
    pub(crate) unsafe fn run_raw_shuffled(
        &self,
        x: *const f32,
        xl: &Layout,
        y: *mut f32,
        yl: &Layout,
        r: usize,
    ) {
        let Weights::Winograd(wc) = &*self.w else { panic!("a fused pixel shuffle needs a Winograd layer") };
        assert!(self.spec.pad == 1 && xl.pad >= 1 && xl.c == self.spec.cin);
        wc.run_raw(x, xl, y, yl, self.act, None, None, r);
    }

    /// Whether a layer of `spec` built for `level` with `algo` can write its output pixel-shuffled
    /// by `r` ([`Conv2d::run_raw_shuffled`]): a same-size Winograd layer whose r² output blocks
    /// are whole vectors.
    pub fn writes_shuffled(level: CpuLevel, spec: &ConvSpec, algo: ConvAlgo, r: usize) -> bool {
        let lanes = crate::kernels::gemm::Shape::of(level).lanes;
        !algo.bf16_for(level, spec)
            && algo.winograd_for(spec)
            && spec.pad == 1
            && r > 1
            && spec.cout.is_multiple_of(r * r)
            && (spec.cout / (r * r)).is_multiple_of(lanes)
    }

    /// Run over raw buffers. `res`, when given, is added as `res + scale·y`; `res2`, when given,
    /// is then added as `res2 + scale2·(that)` (the RRDB "residual of a residual", fused so it
    /// costs no extra pass). Either may alias `y` (same layout), but `x` must not overlap `y`.
    ///
    /// # Safety
    /// `x` must be valid for `xl.len()` reads, `y` for `yl.len()` writes (at the given channel
    /// offset: the pointers address channel 0 of the view), `res` likewise for reads; `xl.pad` must
    /// be at least the convolution's padding, `xl.c == cin`, `yl.c == cout`, and `yl.h x yl.w` must
    /// be the output size.
    pub(crate) unsafe fn run_raw(
        &self,
        x: *const f32,
        xl: &Layout,
        y: *mut f32,
        yl: &Layout,
        res: Option<(*const f32, &Layout, f32)>,
        res2: Option<(*const f32, &Layout, f32)>,
    ) {
        let s = &self.spec;
        assert!(!matches!(*self.w, Weights::None), "a shape-only convolution cannot be run");
        assert!(xl.pad >= s.pad, "input border {} smaller than conv padding {}", xl.pad, s.pad);
        assert_eq!(xl.c, s.cin);
        assert_eq!(yl.c, s.cout);
        assert_eq!(s.out_size(xl.h, xl.w), Some((yl.h, yl.w)), "output size");
        for (_, rl, _) in res.iter().chain(res2.iter()) {
            assert_eq!((rl.h, rl.w), (yl.h, yl.w));
            assert!(rl.c >= s.cout);
        }
        assert!(res2.is_none() || res.is_some(), "a second residual needs a first one");
        if let Weights::Winograd(wc) = &*self.w {
            // A valid (pad 0) 3x3 convolution is a pad-1 one over the input less its outer ring:
            // the same buffer seen as a view one pixel smaller on each side with a border one
            // wider has the same row stride, so the pointer stays and no pixel moves.
            let xv =
                if s.pad == 0 { Layout { h: xl.h - 2, w: xl.w - 2, pad: xl.pad + 1, ..*xl } } else { *xl };
            debug_assert!(s.pad != 0 || xv.offset(0, 0) == xl.offset(1, 1));
            wc.run_raw(x, &xv, y, yl, self.act, res, res2, 1);
            return;
        }
        if let Weights::Bf16(b) = &*self.w {
            b.run_raw(x, xl, y, yl, self.act, res, res2);
            return;
        }
        if let Weights::Thin(t) = &*self.w {
            t.run_raw(self.level, x, xl, y, yl, ThinEpilogue { act: self.act, res, res2 });
            return;
        }
        let kl = self.k_layout(xl);
        let (b, ep) = self.gemm_parts(res.map_or(1.0, |r| r.2));
        let mut ops = Ops::new(b, &kl, &ep);
        ops.res2_scale = res2.map_or(1.0, |r| r.2);
        let stride = s.stride as isize;
        let pad = s.pad as isize;
        let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
        let rp = SendPtr(res.map_or(std::ptr::null(), |r| r.0) as *mut f32);
        let rl = res.map(|r| *r.1);
        let rp2 = SendPtr(res2.map_or(std::ptr::null(), |r| r.0) as *mut f32);
        let rl2 = res2.map(|r| *r.1);
        let level = self.level;
        let panels = b.panels();
        (0..yl.h).into_par_iter().for_each(|oy| {
            let (xp, yp, rp, rp2) = (xp, yp, rp, rp2);
            let oy = oy as isize;
            let line = Line {
                m: yl.w,
                a: xp.0.offset(xl.offset(oy * stride - pad, -pad)),
                a_rs: stride * xl.cs as isize,
                c: yp.0.offset(yl.offset(oy, 0)),
                c_rs: yl.cs as isize,
                res: match rl {
                    Some(rl) => rp.0.offset(rl.offset(oy, 0)),
                    None => std::ptr::null(),
                },
                res_rs: rl.map_or(0, |rl| rl.cs as isize),
                res2: match rl2 {
                    Some(rl) => rp2.0.offset(rl.offset(oy, 0)),
                    None => std::ptr::null(),
                },
                res2_rs: rl2.map_or(0, |rl| rl.cs as isize),
            };
            run_line(level, &line, &ops, 0..panels);
        });
    }

    /// Safe wrapper over owned tensors: allocates the output with border `out_pad`.
    pub fn forward(&self, x: &Tensor, out_pad: usize) -> Tensor {
        let (oh, ow) = self.spec.out_size(x.layout.h, x.layout.w).expect("kernel larger than input");
        let mut y = Tensor::zeros(oh, ow, self.spec.cout, out_pad);
        let yl = y.layout;
        // SAFETY: both tensors own buffers of exactly their layouts' lengths; `run_raw` checks the
        // geometric preconditions.
        unsafe { self.run_raw(x.data.as_ptr(), &x.layout, y.data.as_mut_ptr(), &yl, None, None) };
        y
    }

    /// Run into an existing output tensor (its border is left as it is).
    pub fn forward_into(&self, x: &Tensor, y: &mut Tensor) {
        let yl = y.layout;
        assert_eq!(yl.len(), y.data.len());
        // SAFETY: both tensors own buffers of exactly their layouts' lengths and are distinct;
        // `run_raw` checks the geometric preconditions.
        unsafe { self.run_raw(x.data.as_ptr(), &x.layout, y.data.as_mut_ptr(), &yl, None, None) };
    }

    /// `res + scale·conv(x)`, written into a new tensor.
    pub fn forward_residual(&self, x: &Tensor, res: &Tensor, scale: f32) -> Tensor {
        let (oh, ow) = self.spec.out_size(x.layout.h, x.layout.w).expect("kernel larger than input");
        let mut y = Tensor::zeros(oh, ow, self.spec.cout, res.layout.pad);
        let yl = y.layout;
        // SAFETY: as in `forward`; `res` is a distinct tensor with the output's geometry.
        unsafe {
            self.run_raw(
                x.data.as_ptr(),
                &x.layout,
                y.data.as_mut_ptr(),
                &yl,
                Some((res.data.as_ptr(), &res.layout, scale)),
                None,
            )
        };
        y
    }
}

/// Scalar reference over dense HWC data (f64 accumulation): the oracle for [`Conv2d`].
pub fn reference(
    x: &[f32],
    h: usize,
    w: usize,
    spec: &ConvSpec,
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (oh, ow) = spec.out_size(h, w).expect("kernel larger than input");
    let ConvSpec { cin, cout, kh, kw, stride, pad } = *spec;
    let mut y = vec![0.0f32; oh * ow * cout];
    for oy in 0..oh {
        for ox in 0..ow {
            for o in 0..cout {
                let mut acc = bias.map_or(0.0, |b| b[o] as f64);
                for ky in 0..kh {
                    let iy = (oy * stride + ky) as isize - pad as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * stride + kx) as isize - pad as isize;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        let xo = (iy as usize * w + ix as usize) * cin;
                        for ci in 0..cin {
                            acc += x[xo + ci] as f64 * weight[((o * cin + ci) * kh + ky) * kw + kx] as f64;
                        }
                    }
                }
                y[(oy * ow + ox) * cout + o] = acc as f32;
            }
        }
    }
    y
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

    fn check(spec: ConvSpec, h: usize, w: usize, in_pad: usize) {
        check_algo(spec, h, w, in_pad, ConvAlgo::Direct);
    }

    fn check_algo(spec: ConvSpec, h: usize, w: usize, in_pad: usize, algo: ConvAlgo) {
        let x = rand_vec(h * w * spec.cin, 11);
        let wt = rand_vec(spec.cout * spec.k(), 12);
        let bias = rand_vec(spec.cout, 13);
        let want = reference(&x, h, w, &spec, &wt, Some(&bias));
        let mut xt = Tensor::from_hwc(h, w, spec.cin, in_pad, &x);
        // Border pixels beyond the convolution's own padding must never be read: poison them.
        let xl = xt.layout;
        for yy in -(xl.pad as isize)..(xl.h + xl.pad) as isize {
            for xx in -(xl.pad as isize)..(xl.w + xl.pad) as isize {
                let p = spec.pad as isize;
                if yy < -p || xx < -p || yy >= xl.h as isize + p || xx >= xl.w as isize + p {
                    let o = xl.offset(yy, xx) as usize;
                    xt.data.as_mut_slice()[o..o + xl.c].fill(f32::NAN);
                }
            }
        }
        for level in CpuLevel::supported() {
            let conv = Conv2d::with_algo(level, spec, &wt, Some(&bias), Activation::None, None, algo);
            assert_eq!(conv.is_winograd(), algo.winograd_for(&spec));
            let y = conv.forward(&xt, 1).to_hwc();
            let tol = 2e-5 * (spec.k() as f32).sqrt();
            for (i, (g, w)) in y.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= tol, "{level} {spec:?} {h}x{w}: [{i}] {g} vs {w}");
            }
        }
    }

    fn levels_and_algos() -> Vec<(CpuLevel, ConvAlgo)> {
        CpuLevel::supported().into_iter().flat_map(|l| [(l, ConvAlgo::Direct), (l, ConvAlgo::Auto)]).collect()
    }

    #[test]
    fn kernels_and_sizes() {
        for (h, w) in [(1, 1), (1, 7), (5, 1), (3, 13), (9, 17), (12, 25)] {
            check(ConvSpec::same(3, 64, 3), h, w, 1);
            check(ConvSpec::same(16, 48, 3), h, w, 2);
            check(ConvSpec::same(7, 3, 3), h, w, 1);
            check(ConvSpec::same(8, 24, 1), h, w, 0);
            check(ConvSpec::same(5, 33, 5), h, w, 2);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 40, ..Default::default() })]
        #[test]
        fn random_shapes(h in 1usize..14, w in 1usize..20, cin in 1usize..20, cout in 1usize..40,
                         k in proptest::sample::select(vec![1usize, 3, 5]), stride in 1usize..3, extra_pad in 0usize..2) {
            let pad = k / 2;
            let spec = ConvSpec { cin, cout, kh: k, kw: k, stride, pad };
            check(spec, h, w, pad + extra_pad);
        }
    }

    #[test]
    fn winograd_layers() {
        // "Same" and valid 3x3 and "same" 5x5 layers through Winograd, sizes that end inside a 4x4 tile and
        // single pixels, channel counts that end inside a vector; the border beyond each layer's
        // padding is NaN-poisoned by `check_algo`.
        for (h, w) in [(1, 1), (3, 3), (4, 5), (6, 13), (11, 9), (17, 22)] {
            for (cin, cout) in [(16, 16), (19, 35), (64, 24), (24, 3)] {
                check_algo(ConvSpec::same(cin, cout, 3), h, w, 1, ConvAlgo::Auto);
                check_algo(ConvSpec::same(cin, cout, 3), h, w, 3, ConvAlgo::Auto);
                // 5x5 "same" through F(4x4, 5x5).
                check_algo(ConvSpec::same(cin, cout, 5), h, w, 2, ConvAlgo::Auto);
                check_algo(ConvSpec::same(cin, cout, 5), h, w, 3, ConvAlgo::Auto);
                if h >= 3 && w >= 3 {
                    let valid = ConvSpec { pad: 0, ..ConvSpec::same(cin, cout, 3) };
                    check_algo(valid, h, w, 0, ConvAlgo::Auto);
                    check_algo(valid, h, w, 2, ConvAlgo::Auto);
                }
            }
        }
        // Too few input channels or not 3x3 stride 1: the direct path; at most four outputs:
        // the thin-output kernel in `Auto` (Winograd when forced).
        assert!(!ConvAlgo::Auto.winograd_for(&ConvSpec::same(3, 64, 3)));
        assert!(!ConvAlgo::Auto.winograd_for(&ConvSpec::same(15, 64, 3)));
        assert!(!ConvAlgo::Auto.winograd_for(&ConvSpec::same(64, 3, 3)));
        assert!(ConvAlgo::Auto.thin_for(&ConvSpec::same(64, 3, 3)));
        assert!(ConvAlgo::Auto.winograd_for(&ConvSpec::same(64, 5, 3)));
        assert!(ConvAlgo::Winograd.winograd_for(&ConvSpec::same(64, 3, 3)));
        assert!(ConvAlgo::Auto.winograd_for(&ConvSpec::same(64, 64, 5)));
        assert!(!ConvAlgo::Auto.winograd_for(&ConvSpec { pad: 0, ..ConvSpec::same(64, 64, 5) }));
        assert!(!ConvAlgo::Auto.winograd_for(&ConvSpec { stride: 2, ..ConvSpec::same(64, 64, 5) }));
        assert!(!ConvAlgo::Auto.winograd_for(&ConvSpec { stride: 2, ..ConvSpec::same(64, 64, 3) }));
        assert!(!ConvAlgo::Direct.winograd_for(&ConvSpec::same(64, 64, 3)));
        assert!(ConvAlgo::Winograd.winograd_for(&ConvSpec::same(3, 64, 3)));
        for (h, w) in [(1, 1), (5, 6)] {
            check_algo(ConvSpec::same(3, 5, 3), h, w, 1, ConvAlgo::Winograd);
        }
        assert_eq!("direct".parse(), Ok(ConvAlgo::Direct));
        assert!("winograd2".parse::<ConvAlgo>().is_err());
    }

    #[test]
    fn strided_and_valid() {
        let s2 = ConvSpec { cin: 6, cout: 20, kh: 3, kw: 3, stride: 2, pad: 1 };
        let valid = ConvSpec { cin: 4, cout: 9, kh: 3, kw: 3, stride: 1, pad: 0 };
        let down = ConvSpec { cin: 8, cout: 16, kh: 2, kw: 2, stride: 2, pad: 0 };
        for (h, w) in [(1, 1), (4, 4), (7, 9), (16, 11)] {
            check(s2, h, w, 1);
            if h >= 3 && w >= 3 {
                check(valid, h, w, 0);
            }
            if h >= 2 && w >= 2 {
                check(down, h, w, 0);
            }
        }
    }

    #[test]
    fn channel_slice_views() {
        // Read the first 17 of 40 channels and write into channels 3..23 of a 32-channel buffer.
        let (h, w) = (6, 7);
        let spec = ConvSpec::same(17, 20, 3);
        let x = rand_vec(h * w * 40, 21);
        let wt = rand_vec(spec.cout * spec.k(), 22);
        let xt = Tensor::from_hwc(h, w, 40, 1, &x);
        let x5: Vec<f32> = x.chunks(40).flat_map(|p| p[..17].to_vec()).collect();
        let want = reference(&x5, h, w, &spec, &wt, None);
        for (level, algo) in levels_and_algos() {
            let conv = Conv2d::with_algo(level, spec, &wt, None, Activation::None, None, algo);
            let mut yt = Tensor::zeros(h, w, 32, 1);
            yt.data.as_mut_slice().fill(-9.0);
            let xl = Layout { c: 17, ..xt.layout };
            let yl = Layout { c: 20, ..yt.layout };
            // SAFETY: views inside owned buffers; channel offset 3 + 20 <= 32.
            unsafe { conv.run_raw(xt.data.as_ptr(), &xl, yt.data.as_mut_ptr().add(3), &yl, None, None) };
            for y in 0..h {
                for x in 0..w {
                    for c in 0..32 {
                        let v = yt.at(y, x, c);
                        if (3..23).contains(&c) {
                            let r = want[(y * w + x) * 20 + c - 3];
                            assert!((v - r).abs() < 1e-4, "{level} {algo}: {v} vs {r}");
                        } else {
                            assert_eq!(v, -9.0, "{level}: channel {c} outside the view was written");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn second_residual_in_place() {
        // out = r2 + 0.2·(r1 + 0.2·conv(x)), written over r2 (the RRDB pattern).
        let (h, w) = (4, 11);
        let spec = ConvSpec::same(16, 16, 3);
        let x = rand_vec(h * w * 16, 41);
        let r1 = rand_vec(h * w * 16, 42);
        let r2 = rand_vec(h * w * 16, 43);
        let wt = rand_vec(spec.cout * spec.k(), 44);
        let conv_out = reference(&x, h, w, &spec, &wt, None);
        for (level, algo) in levels_and_algos() {
            let conv = Conv2d::with_algo(level, spec, &wt, None, Activation::None, None, algo);
            let xt = Tensor::from_hwc(h, w, 16, 1, &x);
            let r1t = Tensor::from_hwc(h, w, 16, 1, &r1);
            let mut r2t = Tensor::from_hwc(h, w, 16, 1, &r2);
            let l = r2t.layout;
            let p = r2t.data.as_mut_ptr();
            // SAFETY: the output aliases the second residual with the same layout; x and r1 are distinct.
            unsafe {
                conv.run_raw(
                    xt.data.as_ptr(),
                    &xt.layout,
                    p,
                    &l,
                    Some((r1t.data.as_ptr(), &l, 0.2)),
                    Some((p, &l, 0.2)),
                )
            };
            for (i, g) in r2t.to_hwc().iter().enumerate() {
                let want = r2[i] as f64 + 0.2 * (r1[i] as f64 + 0.2 * conv_out[i] as f64);
                assert!((*g as f64 - want).abs() < 2e-5, "{level} {algo} [{i}]: {g} vs {want}");
            }
        }
    }

    #[test]
    fn in_place_residual() {
        let (h, w) = (5, 9);
        let spec = ConvSpec::same(16, 16, 3);
        let x = rand_vec(h * w * 16, 31);
        let r = rand_vec(h * w * 16, 32);
        let wt = rand_vec(spec.cout * spec.k(), 33);
        let conv_out = reference(&x, h, w, &spec, &wt, None);
        for (level, algo) in levels_and_algos() {
            let conv = Conv2d::with_algo(level, spec, &wt, None, Activation::None, None, algo);
            let xt = Tensor::from_hwc(h, w, 16, 1, &x);
            let mut rt = Tensor::from_hwc(h, w, 16, 1, &r);
            let l = rt.layout;
            let p = rt.data.as_mut_ptr();
            // SAFETY: output aliases the residual with the same layout, which run_raw allows.
            unsafe { conv.run_raw(xt.data.as_ptr(), &xt.layout, p, &l, Some((p, &l, 0.1)), None) };
            for (i, (g, (c, r0))) in rt.to_hwc().iter().zip(conv_out.iter().zip(&r)).enumerate() {
                let want = r0 + 0.1 * c;
                assert!((g - want).abs() < 2e-5, "{level} {algo} [{i}]: {g} vs {want}");
            }
        }
    }
}
