//! Helpers shared by the architecture builders: load a named convolution with shape checks,
//! append it to the graph, and count parameters.

use super::source::TensorSource;
use crate::cpu::CpuLevel;
use crate::error::Result;
use crate::graph::{Graph, ShuffleOrder, ValueId};
use crate::kernels::conv::{Conv2d, ConvAlgo, ConvSpec};
use crate::kernels::deconv::{Deconv2d, DeconvSpec};
use crate::kernels::deform::{BorderRule, DeformConv2d};
use crate::kernels::gemm::Activation;
use crate::kernels::se::SqueezeExcite;
use std::borrow::Cow;
use std::collections::HashMap;

pub(crate) struct Builder<'a> {
    pub src: &'a TensorSource,
    pub level: CpuLevel,
    /// Which layers run through Winograd.
    pub algo: ConvAlgo,
    pub graph: Graph,
    /// Canonical names of every tensor used, in order (what a converted file stores).
    pub used: Vec<String>,
    /// Check shapes but do not read or pack weights (for planning only).
    pub shape_only: bool,
    /// Layers already loaded, by name: a layer applied to several frames is packed once.
    convs: HashMap<String, Conv2d>,
    deforms: HashMap<String, DeformConv2d>,
}

impl<'a> Builder<'a> {
    pub fn new(src: &'a TensorSource, level: CpuLevel, in_channels: usize) -> Self {
        Builder {
            src,
            level,
            algo: ConvAlgo::Direct,
            graph: Graph::new(in_channels),
            used: Vec::new(),
            shape_only: false,
            convs: HashMap::new(),
            deforms: HashMap::new(),
        }
    }

    /// Load `{name}.weight` ([cout, cin, k, k]) and `{name}.bias` ([cout]) as a "same" conv;
    /// for PReLU the slopes come from `prelu` ([cout]).
    pub fn load_conv(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        act: Activation,
        prelu: Option<&str>,
    ) -> Result<Conv2d> {
        let spec = ConvSpec::same(cin, cout, k);
        self.load_conv_spec(name, spec, act, prelu, true)
    }

    /// As [`Builder::load_conv`] for any geometry; without `require_bias` a missing `{name}.bias`
    /// means a bias-free convolution (e.g. `bias=False` layers).
    pub fn load_conv_spec(
        &mut self,
        name: &str,
        spec: ConvSpec,
        act: Activation,
        prelu: Option<&str>,
        require_bias: bool,
    ) -> Result<Conv2d> {
        if let Some(c) = self
            .convs
            .get(name)
            .filter(|c| *c.spec() == spec && (prelu.is_some() == (act == Activation::PRelu)))
        {
            return Ok(c.with_act(act));
        }
        let c = self.load_conv_uncached(name, spec, act, prelu, require_bias, None)?;
        self.convs.insert(name.to_string(), c.clone());
        Ok(c)
    }

    fn load_conv_uncached(
        &mut self,
        name: &str,
        spec: ConvSpec,
        act: Activation,
        prelu: Option<&str>,
        require_bias: bool,
        shuffle: Option<usize>,
    ) -> Result<Conv2d> {
        let ConvSpec { cin, cout, kh, kw, .. } = spec;
        let wname = format!("{name}.weight");
        if cin == 0 || cout == 0 {
            let what = format!("a convolution with {cin} input and {cout} output channels cannot be built");
            return Err(crate::error::Error::tensor(self.src.path(), wname, what));
        }
        let bname = format!("{name}.bias");
        let has_bias = require_bias || self.src.contains(&bname);
        if self.shape_only {
            self.src.expect_shape(&wname, &[cout, cin, kh, kw])?;
            if has_bias {
                self.src.expect_shape(&bname, &[cout])?;
            }
            if let Some(p) = prelu {
                self.src.expect_shape(p, &[cout])?;
            }
            return Ok(Conv2d::shape_only(spec, act));
        }
        let w = self.src.expect(&wname, &[cout, cin, kh, kw])?;
        self.used.push(wname);
        let b = if has_bias {
            let b = self.src.expect(&bname, &[cout])?;
            self.used.push(bname);
            Some(b)
        } else {
            None
        };
        let slopes = match prelu {
            Some(p) => {
                let s = self.src.expect(p, &[cout])?;
                self.used.push(p.to_string());
                Some(s)
            }
            None => None,
        };
        // A pixel shuffle by `r` follows: store the outputs in its grouped order.
        let (w, b, slopes) = match shuffle {
            Some(r) => {
                let g = |v: &[f32]| Cow::Owned(grouped_outputs(v, cout, r));
                (g(&w), b.as_deref().map(g), slopes.as_deref().map(g))
            }
            None => (w, b, slopes),
        };
        Ok(Conv2d::with_algo(self.level, spec, &w, b.as_deref(), act, slopes.as_deref(), self.algo))
    }

    /// `pixel_shuffle(act(conv(x)), r)` (+ `nearest_upsample(skip, r)`), with `{name}` a "same"
    /// conv of `cout` = C·r² outputs in PyTorch's order. The conv's outputs are permuted at load
    /// time so that each output pixel's C channels are contiguous ([`ShuffleOrder::Grouped`]):
    /// where [`Conv2d::writes_shuffled`] holds the conv stores them at their shuffled positions
    /// itself, else a shuffle node copies runs instead of a stride-r² gather. Each output
    /// channel is computed as before, so the result is bit-identical.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_shuffle(
        &mut self,
        x: ValueId,
        name: &str,
        cout: usize,
        k: usize,
        act: Activation,
        r: usize,
        skip: Option<ValueId>,
    ) -> Result<ValueId> {
        let spec = ConvSpec::same(self.graph.channels(x), cout, k);
        let c = self.load_conv_uncached(name, spec, act, None, true, Some(r))?;
        if skip.is_none() && Conv2d::writes_shuffled(self.level, &spec, self.algo, r) {
            // The convolution stores each output straight at its shuffled position.
            return Ok(self.graph.conv_shuffled(x, c, r));
        }
        let h = self.graph.conv(x, c);
        Ok(self.graph.shuffle(h, skip, r, ShuffleOrder::Grouped))
    }

    pub fn conv(
        &mut self,
        x: ValueId,
        name: &str,
        cout: usize,
        k: usize,
        act: Activation,
    ) -> Result<ValueId> {
        let cin = self.graph.channels(x);
        let c = self.load_conv(name, cin, cout, k, act, None)?;
        Ok(self.graph.conv(x, c))
    }

    /// A "same" conv over input channels `cin.start..cin.end` of the stored `{name}.weight`
    /// (`[cout, cin_total, k, k]`), with the bias only if `bias`: lets a 1x1 fusion over a long
    /// concatenation run as a sum of convs over its parts, so the concatenation is never built.
    pub fn load_conv_slice(
        &mut self,
        name: &str,
        cin_total: usize,
        cin: std::ops::Range<usize>,
        cout: usize,
        k: usize,
        bias: bool,
    ) -> Result<Conv2d> {
        let spec = ConvSpec::same(cin.len(), cout, k);
        let (wname, bname) = (format!("{name}.weight"), format!("{name}.bias"));
        self.src.expect_shape(&wname, &[cout, cin_total, k, k])?;
        self.src.expect_shape(&bname, &[cout])?;
        if self.shape_only {
            return Ok(Conv2d::shape_only(spec, Activation::None));
        }
        let w = self.src.expect(&wname, &[cout, cin_total, k, k])?;
        let kk = k * k;
        let mut part = Vec::with_capacity(cout * cin.len() * kk);
        for o in 0..cout {
            part.extend_from_slice(&w[(o * cin_total + cin.start) * kk..(o * cin_total + cin.end) * kk]);
        }
        let b = if bias { Some(self.src.expect(&bname, &[cout])?) } else { None };
        for n in [wname, bname] {
            if !self.used.contains(&n) {
                self.used.push(n);
            }
        }
        Ok(Conv2d::with_algo(self.level, spec, &part, b.as_deref(), Activation::None, None, self.algo))
    }

    /// `res2 + s2·(res + s·act(conv(x)))` with optional residuals, into a fresh value or into
    /// the unwritten view `into` (see [`Graph::view`](crate::graph::Graph::view)).
    #[allow(clippy::too_many_arguments)]
    pub fn conv_to(
        &mut self,
        x: ValueId,
        name: &str,
        cout: usize,
        k: usize,
        act: Activation,
        res: Option<(ValueId, f32)>,
        res2: Option<(ValueId, f32)>,
        into: Option<ValueId>,
    ) -> Result<ValueId> {
        let cin = self.graph.channels(x);
        let c = self.load_conv(name, cin, cout, k, act, None)?;
        Ok(self.graph.conv_into(x, c, res, res2, into))
    }

    /// A convolution of any geometry (valid padding, stride) with an activation.
    pub fn conv_spec(&mut self, x: ValueId, name: &str, spec: ConvSpec, act: Activation) -> Result<ValueId> {
        assert_eq!(self.graph.channels(x), spec.cin);
        let c = self.load_conv_spec(name, spec, act, None, true)?;
        Ok(self.graph.conv(x, c))
    }

    /// A transposed convolution: `{name}.weight` `[cin, cout, k, k]` (PyTorch `ConvTranspose2d`
    /// order) and `{name}.bias` `[cout]`.
    pub fn deconv(&mut self, x: ValueId, name: &str, spec: DeconvSpec, act: Activation) -> Result<ValueId> {
        assert_eq!(self.graph.channels(x), spec.cin);
        let DeconvSpec { cin, cout, k, .. } = spec;
        let (wname, bname) = (format!("{name}.weight"), format!("{name}.bias"));
        if cin == 0 || cout == 0 {
            let what = format!(
                "a transposed convolution with {cin} input and {cout} output channels cannot be built"
            );
            return Err(crate::error::Error::tensor(self.src.path(), wname, what));
        }
        let d = if self.shape_only {
            self.src.expect_shape(&wname, &[cin, cout, k, k])?;
            self.src.expect_shape(&bname, &[cout])?;
            Deconv2d::shape_only(spec, act)
        } else {
            let w = self.src.expect(&wname, &[cin, cout, k, k])?;
            let bias = self.src.expect(&bname, &[cout])?;
            self.used.push(wname);
            self.used.push(bname);
            Deconv2d::new(self.level, spec, &w, Some(&bias), act)
        };
        Ok(self.graph.deconv(x, d, None))
    }

    /// `crop(a) + b` for a U-Net skip, with the channel counts checked (they come from weights).
    pub fn crop_add(&mut self, a: ValueId, crop: usize, b: ValueId, what: &str) -> Result<ValueId> {
        let (ca, cb) = (self.graph.channels(a), self.graph.channels(b));
        if ca != cb {
            return Err(crate::error::Error::tensor(
                self.src.path(),
                what,
                format!("its output has {cb} channels but the skip it is added to has {ca}"),
            ));
        }
        Ok(self.graph.crop_add(a, crop, crop, b))
    }

    /// Squeeze-and-excitation with nunif's names: `{name}.conv1` (`[mid, c, 1, 1]` + bias) and
    /// `{name}.conv2` (`[c, mid, 1, 1]` + bias); `mid` is read from the weights.
    pub fn se(&mut self, x: ValueId, name: &str) -> Result<ValueId> {
        let c = self.graph.channels(x);
        let n = |s: &str| format!("{name}.{s}");
        let mid = match self.src.shape(&n("conv1.weight")) {
            Some(s) if s.len() == 4 && s[0] > 0 => s[0],
            _ => {
                let e = format!("missing or not a [mid, {c}, 1, 1] weight");
                return Err(crate::error::Error::tensor(self.src.path(), n("conv1.weight"), e));
            }
        };
        let shapes = [
            (n("conv1.weight"), vec![mid, c, 1, 1]),
            (n("conv1.bias"), vec![mid]),
            (n("conv2.weight"), vec![c, mid, 1, 1]),
            (n("conv2.bias"), vec![c]),
        ];
        let se = if self.shape_only {
            for (t, s) in &shapes {
                self.src.expect_shape(t, s)?;
            }
            SqueezeExcite::shape_only(c, mid)
        } else {
            let mut v = Vec::new();
            for (t, s) in &shapes {
                v.push(self.src.expect(t, s)?);
                self.used.push(t.clone());
            }
            SqueezeExcite::new(self.level, c, mid, &v[0], &v[1], &v[2], &v[3])
        };
        Ok(self.graph.se(x, se, None))
    }

    pub fn conv_prelu(&mut self, x: ValueId, name: &str, cout: usize, slopes: &str) -> Result<ValueId> {
        let cin = self.graph.channels(x);
        let c = self.load_conv(name, cin, cout, 3, Activation::PRelu, Some(slopes))?;
        Ok(self.graph.conv(x, c))
    }

    /// A deformable convolution `name` (weight, optional bias) of `x`, offsets from `off`.
    #[allow(clippy::too_many_arguments)]
    pub fn deform(
        &mut self,
        x: ValueId,
        off: ValueId,
        name: &str,
        cout: usize,
        groups: usize,
        modulated: bool,
        rule: BorderRule,
        act: Activation,
    ) -> Result<ValueId> {
        let cin = self.graph.channels(x);
        let spec = ConvSpec::same(cin, cout, 3);
        if let Some(d) = self.deforms.get(name).filter(|d| {
            *d.spec() == spec && d.groups() == groups && d.modulated() == modulated && d.rule() == rule
        }) {
            let d = d.with_act(act);
            return Ok(self.graph.deform_conv(x, off, d));
        }
        let wname = format!("{name}.weight");
        let bname = format!("{name}.bias");
        let has_bias = self.src.contains(&bname);
        if self.shape_only {
            self.src.expect_shape(&wname, &[cout, cin, 3, 3])?;
            let d = DeformConv2d::new(
                CpuLevel::Portable,
                spec,
                &vec![0.0; cout * cin * 9],
                None,
                act,
                groups,
                modulated,
                rule,
            );
            self.deforms.insert(name.to_string(), d.clone());
            return Ok(self.graph.deform_conv(x, off, d));
        }
        let w = self.src.expect(&wname, &[cout, cin, 3, 3])?;
        self.used.push(wname);
        let b = if has_bias {
            let b = self.src.expect(&bname, &[cout])?;
            self.used.push(bname);
            Some(b)
        } else {
            None
        };
        let d = DeformConv2d::new(self.level, spec, &w, b.as_deref(), act, groups, modulated, rule);
        self.deforms.insert(name.to_string(), d.clone());
        Ok(self.graph.deform_conv(x, off, d))
    }

    /// `x + res_scale·conv2(relu(conv1(x)))` with convs `{prefix}.{c1}` and `{prefix}.{c2}`
    /// (BasicSR `ResidualBlockNoBN`, EDSR-PyTorch `ResBlock`, TDAN `Res_Block`).
    pub fn res_block(&mut self, x: ValueId, c1: &str, c2: &str, k: usize, res_scale: f32) -> Result<ValueId> {
        let f = self.graph.channels(x);
        let t = self.conv(x, c1, f, k, Activation::Relu)?;
        self.conv_res(t, c2, k, x, res_scale)
    }

    /// `res + scale·conv(x)`.
    pub fn conv_res(
        &mut self,
        x: ValueId,
        name: &str,
        k: usize,
        res: ValueId,
        scale: f32,
    ) -> Result<ValueId> {
        let cin = self.graph.channels(x);
        let cout = self.graph.channels(res);
        let c = self.load_conv(name, cin, cout, k, Activation::None, None)?;
        Ok(self.graph.conv_residual(x, c, res, scale))
    }

    /// A sub-pixel upsampler: for 2^n, n stages of conv (F -> 4F) + shuffle(2); for 3, conv
    /// (F -> 9F) + shuffle(3). Conv names are `{prefix}.{0,2,4..}` as in BasicSR and EDSR-PyTorch.
    pub fn upsampler(&mut self, x: ValueId, prefix: &str, scale: usize) -> Result<ValueId> {
        let f = self.graph.channels(x);
        let stages: Vec<usize> = if scale == 3 { vec![3] } else { vec![2; scale.trailing_zeros() as usize] };
        let mut h = x;
        for (i, r) in stages.into_iter().enumerate() {
            h = self.conv_shuffle(
                h,
                &format!("{prefix}.{}", 2 * i),
                f * r * r,
                3,
                Activation::None,
                r,
                None,
            )?;
        }
        Ok(h)
    }
}

/// Whether `scale` is one a sub-pixel upsampler can make (2^n or 3).
pub(crate) fn upsampler_scale_ok(scale: usize) -> bool {
    scale == 3 || (scale >= 2 && scale.is_power_of_two())
}

/// `v` (per output channel runs of `v.len() / cout` values, PyTorch's pixel-shuffle order
/// `c·r² + s`) with its runs moved to the grouped order `s·C + c`.
fn grouped_outputs(v: &[f32], cout: usize, r: usize) -> Vec<f32> {
    let (rr, per) = (r * r, v.len() / cout);
    let c = cout / rr;
    let mut out = vec![0.0; v.len()];
    for o in 0..cout {
        let to = ShuffleOrder::Grouped.channel(o / rr, o % rr / r, o % r, c, r);
        out[to * per..][..per].copy_from_slice(&v[o * per..][..per]);
    }
    out
}
