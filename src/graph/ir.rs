//! Graph nodes and their static properties (shapes, receptive field, cost).

use crate::kernels::conv::Conv2d;
use crate::kernels::deform::DeformConv2d;
use crate::kernels::sample::{pool_out, PoolKind};

/// Index of a value (an activation tensor) in a [`Graph`].
pub type ValueId = usize;

/// One operation. Every node writes exactly one new value.
#[derive(Clone, Debug)]
pub enum Node {
    /// `y = act(conv(x) + bias)`, then `y = res + scale·y` when `res` is set.
    Conv { x: ValueId, y: ValueId, conv: Conv2d, res: Option<(ValueId, f32)> },
    /// `y = pixel_shuffle(x, r)`, plus `nearest_upsample(skip, r)` when `skip` is set.
    Shuffle { x: ValueId, skip: Option<ValueId>, y: ValueId, r: usize },
    /// Deformable convolution of `x` with offsets (and mask logits) read from `off`.
    DeformConv { x: ValueId, off: ValueId, y: ValueId, conv: DeformConv2d, res: Option<(ValueId, f32)> },
    /// `y = mult · bilinear_upsample(x, factor)` (align_corners=False).
    Upsample { x: ValueId, y: ValueId, factor: usize, mult: f32 },
    /// Max or average pooling (average counts padding).
    Pool { x: ValueId, y: ValueId, kind: PoolKind, k: usize, stride: usize, pad: usize },
    /// Channel concatenation (a copy).
    Concat { xs: Vec<ValueId>, y: ValueId },
    /// `y = cat_t(feats[t] · sigmoid(Σ_c embs[t]·reference))` (TSA temporal attention).
    TemporalAttention { embs: Vec<ValueId>, reference: ValueId, feats: Vec<ValueId>, y: ValueId },
    /// `y = feat · sigmoid(attn) · 2 + add` (TSA output).
    TsaCombine { feat: ValueId, attn: ValueId, add: ValueId, y: ValueId },
    /// `y = a + b`.
    Add { a: ValueId, b: ValueId, y: ValueId },
}

impl Node {
    pub fn output(&self) -> ValueId {
        match self {
            Node::Conv { y, .. }
            | Node::Shuffle { y, .. }
            | Node::DeformConv { y, .. }
            | Node::Upsample { y, .. }
            | Node::Pool { y, .. }
            | Node::Concat { y, .. }
            | Node::TemporalAttention { y, .. }
            | Node::TsaCombine { y, .. }
            | Node::Add { y, .. } => *y,
        }
    }

    /// Values this node reads.
    pub fn inputs(&self) -> Vec<ValueId> {
        match self {
            Node::Conv { x, res, .. } => std::iter::once(*x).chain(res.map(|r| r.0)).collect(),
            Node::Shuffle { x, skip, .. } => std::iter::once(*x).chain(*skip).collect(),
            Node::DeformConv { x, off, res, .. } => [*x, *off].into_iter().chain(res.map(|r| r.0)).collect(),
            Node::Upsample { x, .. } | Node::Pool { x, .. } => vec![*x],
            Node::Concat { xs, .. } => xs.clone(),
            Node::TemporalAttention { embs, reference, feats, .. } => {
                embs.iter().chain(std::iter::once(reference)).chain(feats).copied().collect()
            }
            Node::TsaCombine { feat, attn, add, .. } => vec![*feat, *attn, *add],
            Node::Add { a, b, .. } => vec![*a, *b],
        }
    }

    /// The residual input this node may overwrite in place, if any.
    pub fn residual(&self) -> Option<ValueId> {
        match self {
            Node::Conv { res, .. } | Node::DeformConv { res, .. } => res.map(|r| r.0),
            _ => None,
        }
    }
}

/// A static graph with one or more input and output values.
#[derive(Clone, Debug)]
pub struct Graph {
    nodes: Vec<Node>,
    channels: Vec<usize>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
}

impl Graph {
    /// A graph whose first input has `in_channels` channels.
    pub fn new(in_channels: usize) -> Self {
        Graph { nodes: Vec::new(), channels: vec![in_channels], inputs: vec![0], outputs: Vec::new() }
    }

    /// Another input value.
    pub fn add_input(&mut self, channels: usize) -> ValueId {
        self.channels.push(channels);
        let v = self.channels.len() - 1;
        self.inputs.push(v);
        v
    }

    /// The first input.
    pub fn input(&self) -> ValueId {
        self.inputs[0]
    }

    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    /// Declare the outputs (by default the value of the last node).
    pub fn set_outputs(&mut self, outputs: &[ValueId]) {
        self.outputs = outputs.to_vec();
    }

    pub fn outputs(&self) -> Vec<ValueId> {
        if self.outputs.is_empty() {
            vec![self.nodes.last().map_or(self.inputs[0], |n| n.output())]
        } else {
            self.outputs.clone()
        }
    }

    /// The first output.
    pub fn output(&self) -> ValueId {
        self.outputs()[0]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn channels(&self, v: ValueId) -> usize {
        self.channels[v]
    }

    pub fn num_values(&self) -> usize {
        self.channels.len()
    }

    fn push(&mut self, c: usize, make: impl FnOnce(ValueId) -> Node) -> ValueId {
        let y = self.channels.len();
        self.channels.push(c);
        self.nodes.push(make(y));
        y
    }

    /// Append a convolution reading `x`.
    pub fn conv(&mut self, x: ValueId, conv: Conv2d) -> ValueId {
        assert_eq!(self.channels[x], conv.spec().cin, "conv input channels");
        self.push(conv.spec().cout, |y| Node::Conv { x, y, conv, res: None })
    }

    /// Append `res + scale·conv(x)`.
    pub fn conv_residual(&mut self, x: ValueId, conv: Conv2d, res: ValueId, scale: f32) -> ValueId {
        assert_eq!(self.channels[x], conv.spec().cin, "conv input channels");
        assert_eq!(self.channels[res], conv.spec().cout, "residual channels");
        self.push(conv.spec().cout, |y| Node::Conv { x, y, conv, res: Some((res, scale)) })
    }

    pub fn pixel_shuffle(&mut self, x: ValueId, r: usize) -> ValueId {
        let c = self.channels[x];
        assert!(r > 0 && c % (r * r) == 0, "pixel shuffle of {c} channels by {r}");
        self.push(c / (r * r), |y| Node::Shuffle { x, skip: None, y, r })
    }

    /// `pixel_shuffle(x, r) + nearest_upsample(skip, r)`.
    pub fn shuffle_add_nearest(&mut self, x: ValueId, skip: ValueId, r: usize) -> ValueId {
        let c = self.channels[x];
        assert!(r > 0 && c % (r * r) == 0 && self.channels[skip] == c / (r * r));
        self.push(c / (r * r), |y| Node::Shuffle { x, skip: Some(skip), y, r })
    }

    /// Deformable convolution of `x` with offsets from `off`.
    pub fn deform_conv(&mut self, x: ValueId, off: ValueId, conv: DeformConv2d) -> ValueId {
        assert_eq!(self.channels[x], conv.spec().cin, "deformable conv input channels");
        assert!(self.channels[off] >= conv.offset_channels(), "offset channels");
        self.push(conv.spec().cout, |y| Node::DeformConv { x, off, y, conv, res: None })
    }

    pub fn upsample_bilinear(&mut self, x: ValueId, factor: usize, mult: f32) -> ValueId {
        assert!(factor > 0);
        let c = self.channels[x];
        self.push(c, |y| Node::Upsample { x, y, factor, mult })
    }

    pub fn pool(&mut self, x: ValueId, kind: PoolKind, k: usize, stride: usize, pad: usize) -> ValueId {
        assert!(k > 0 && stride > 0 && pad < k);
        let c = self.channels[x];
        self.push(c, |y| Node::Pool { x, y, kind, k, stride, pad })
    }

    pub fn concat(&mut self, xs: &[ValueId]) -> ValueId {
        assert!(!xs.is_empty());
        let c = xs.iter().map(|&v| self.channels[v]).sum();
        self.push(c, |y| Node::Concat { xs: xs.to_vec(), y })
    }

    pub fn temporal_attention(&mut self, embs: &[ValueId], reference: ValueId, feats: &[ValueId]) -> ValueId {
        assert_eq!(embs.len(), feats.len());
        assert!(embs.iter().all(|&e| self.channels[e] == self.channels[reference]));
        let c = feats.iter().map(|&v| self.channels[v]).sum();
        self.push(c, |y| Node::TemporalAttention { embs: embs.to_vec(), reference, feats: feats.to_vec(), y })
    }

    pub fn tsa_combine(&mut self, feat: ValueId, attn: ValueId, add: ValueId) -> ValueId {
        let c = self.channels[feat];
        assert!(self.channels[attn] == c && self.channels[add] == c);
        self.push(c, |y| Node::TsaCombine { feat, attn, add, y })
    }

    pub fn add(&mut self, a: ValueId, b: ValueId) -> ValueId {
        let c = self.channels[a];
        assert_eq!(self.channels[b], c, "add channels");
        self.push(c, |y| Node::Add { a, b, y })
    }

    /// Spatial size of every value when every input is `h x w`; `None` if something does not fit.
    pub fn sizes(&self, h: usize, w: usize) -> Option<Vec<(usize, usize)>> {
        self.sizes_with(&vec![(h, w); self.inputs.len()])
    }

    /// Spatial size of every value for the given input sizes (one per input, in order).
    pub fn sizes_with(&self, inputs: &[(usize, usize)]) -> Option<Vec<(usize, usize)>> {
        assert_eq!(inputs.len(), self.inputs.len(), "one size per input");
        let mut s = vec![(0, 0); self.channels.len()];
        for (&v, &hw) in self.inputs.iter().zip(inputs) {
            s[v] = hw;
        }
        for n in &self.nodes {
            let same = |vs: &[ValueId]| -> Option<(usize, usize)> {
                let first = s[vs[0]];
                vs.iter().all(|&v| s[v] == first).then_some(first)
            };
            s[n.output()] = match n {
                Node::Conv { x, conv, res, .. } => {
                    let o = conv.spec().out_size(s[*x].0, s[*x].1)?;
                    if res.is_some_and(|(r, _)| s[r] != o) {
                        return None;
                    }
                    o
                }
                Node::DeformConv { x, off, conv, res, .. } => {
                    let o = conv.spec().out_size(s[*x].0, s[*x].1)?;
                    if s[*off] != o || res.is_some_and(|(r, _)| s[r] != o) {
                        return None;
                    }
                    o
                }
                Node::Shuffle { x, skip, r, .. } => {
                    if skip.is_some_and(|k| s[k] != s[*x]) {
                        return None;
                    }
                    (s[*x].0 * r, s[*x].1 * r)
                }
                Node::Upsample { x, factor, .. } => (s[*x].0 * factor, s[*x].1 * factor),
                Node::Pool { x, k, stride, pad, .. } => {
                    if s[*x].0 + 2 * pad < *k || s[*x].1 + 2 * pad < *k {
                        return None;
                    }
                    (pool_out(s[*x].0, *k, *stride, *pad), pool_out(s[*x].1, *k, *stride, *pad))
                }
                Node::Concat { xs, .. } => same(xs)?,
                Node::TemporalAttention { embs, reference, feats, .. } => {
                    let all: Vec<ValueId> =
                        embs.iter().chain(std::iter::once(reference)).chain(feats).copied().collect();
                    same(&all)?
                }
                Node::TsaCombine { feat, attn, add, .. } => same(&[*feat, *attn, *add])?,
                Node::Add { a, b, .. } => same(&[*a, *b])?,
            };
            if s[n.output()].0 == 0 || s[n.output()].1 == 0 {
                return None;
            }
        }
        Some(s)
    }

    /// Radius, in input pixels, of the neighbourhood that an output pixel depends on, around the
    /// input pixel it maps to (output pixel Y at scale s maps to input pixel floor(Y/s)). Tiles
    /// that overlap by at least this much reproduce the untiled result exactly. `None` when it is
    /// unbounded (deformable convolutions can sample anywhere).
    pub fn finite_receptive_field(&self) -> Option<usize> {
        let mut r: Vec<Option<usize>> = vec![None; self.channels.len()];
        for o in self.outputs() {
            r[o] = Some(0);
        }
        let need = |v: ValueId, rad: usize, r: &mut Vec<Option<usize>>| {
            r[v] = Some(r[v].map_or(rad, |old| old.max(rad)));
        };
        for n in self.nodes.iter().rev() {
            let Some(ry) = r[n.output()] else { continue };
            match n {
                Node::Conv { x, conv, res, .. } => {
                    let s = conv.spec();
                    need(*x, ry * s.stride + (s.kh.max(s.kw) - 1) / 2, &mut r);
                    if let Some((rv, _)) = res {
                        need(*rv, ry, &mut r);
                    }
                }
                Node::DeformConv { .. } => return None,
                Node::Shuffle { x, skip, r: f, .. } => {
                    need(*x, ry.div_ceil(*f), &mut r);
                    if let Some(sv) = skip {
                        need(*sv, ry.div_ceil(*f), &mut r);
                    }
                }
                Node::Upsample { x, factor, .. } => need(*x, ry.div_ceil(*factor) + 1, &mut r),
                Node::Pool { x, k, stride, .. } => need(*x, ry * stride + (k - 1) / 2, &mut r),
                _ => {
                    for v in n.inputs() {
                        need(v, ry, &mut r);
                    }
                }
            }
        }
        Some(self.inputs.iter().map(|&i| r[i].unwrap_or(0)).max().unwrap_or(0))
    }

    /// [`Graph::finite_receptive_field`], saturating to `usize::MAX` when unbounded.
    pub fn receptive_field(&self) -> usize {
        self.finite_receptive_field().unwrap_or(usize::MAX)
    }

    /// Multiply-accumulates for an `h x w` input (all inputs that size).
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        self.macs_with(&vec![(h, w); self.inputs.len()])
    }

    /// Multiply-accumulates of the convolutions (plain and deformable) for the given input sizes.
    pub fn macs_with(&self, inputs: &[(usize, usize)]) -> u64 {
        let Some(s) = self.sizes_with(inputs) else { return 0 };
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Conv { y, conv, .. } => conv.spec().macs(s[*y].0, s[*y].1),
                Node::DeformConv { y, conv, .. } => conv.spec().macs(s[*y].0, s[*y].1),
                _ => 0,
            })
            .sum()
    }

    /// Bytes of prepared (packed) weights.
    pub fn weight_bytes(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Conv { conv, .. } => conv.bytes(),
                Node::DeformConv { conv, .. } => conv.bytes(),
                _ => 0,
            })
            .sum()
    }

    /// Overall upscaling factor (first output size / first input size) along each axis.
    pub fn scale(&self) -> usize {
        let s = self.sizes(64, 64).unwrap_or_default();
        s.get(self.output()).map_or(1, |o| o.0 / 64)
    }
}
