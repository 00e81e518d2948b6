//! Graph nodes and their static properties (shapes, receptive field, cost).
//!
//! Values are activations. A value is either a *root* with a buffer of its own, or a *view*:
//! channels `offset..offset + c` of a root's buffer. Views are how dense concatenation costs
//! nothing: the `x, x1, x2, ...` of a residual dense block are written side by side into one
//! buffer, each convolution writing its channel slice and reading the prefix it needs. Every
//! node writes exactly one value (a new root, or a view no node has written yet); a root created
//! with [`Graph::buffer`] is written only through its views.

use crate::kernels::conv::Conv2d;
use crate::kernels::deconv::Deconv2d;
use crate::kernels::deform::DeformConv2d;
use crate::kernels::gemm::Activation;
use crate::kernels::sample::{pool_out, PoolKind};
use crate::kernels::se::SqueezeExcite;
pub use crate::kernels::shuffle::ShuffleOrder;

/// Index of a value (an activation tensor) in a [`Graph`].
pub type ValueId = usize;

/// Where a view's channels live: `offset..offset + channels` of `root`'s buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub root: ValueId,
    pub offset: usize,
}

/// One operation. Every node writes exactly one new value.
#[derive(Clone, Debug)]
pub enum Node {
    /// `y = act(conv(x) + bias)`, then `y = res + scale·y` when `res` is set, then
    /// `y = res2 + scale2·y` when `res2` is set. With `shuffle` r > 1 (no residuals then),
    /// `y = pixel_shuffle(act(conv(x) + bias), r)`, the conv's outputs being in the grouped order
    /// ([`ShuffleOrder::Grouped`]) and written in place by the convolution.
    Conv {
        x: ValueId,
        y: ValueId,
        conv: Conv2d,
        res: Option<(ValueId, f32)>,
        res2: Option<(ValueId, f32)>,
        shuffle: usize,
    },
    /// `y = pixel_shuffle(x, r)`, plus `nearest_upsample(skip, r)` when `skip` is set; `order`
    /// says how `x`'s channels hold the sub-pixels.
    Shuffle { x: ValueId, skip: Option<ValueId>, y: ValueId, r: usize, order: ShuffleOrder },
    /// `y = pixel_unshuffle(x, r)`.
    Unshuffle { x: ValueId, y: ValueId, r: usize },
    /// `y = nearest_upsample(x, r)`.
    Upsample { x: ValueId, y: ValueId, r: usize },
    /// `y = act(conv_transpose(x) + bias)`.
    Deconv { x: ValueId, y: ValueId, deconv: Deconv2d },
    /// `y = a[top.., left..] + b`, where `a` is `b` grown by `top` rows and `left` columns on each
    /// side (PyTorch `F.pad(a, (-left, -left, -top, -top)) + b`), or the plain crop when `b` is
    /// `None` (then `size` gives the output size).
    CropAdd { a: ValueId, top: usize, left: usize, b: Option<ValueId>, size: (usize, usize), y: ValueId },
    /// `y = x · sigmoid(W2·relu(W1·mean(x) + b1) + b2)` (squeeze-and-excitation).
    Se { x: ValueId, y: ValueId, se: SqueezeExcite },
    /// Deformable convolution of `x` with offsets (and mask logits) read from `off`, then
    /// `y = res + scale·y` when `res` is set.
    DeformConv { x: ValueId, off: ValueId, y: ValueId, conv: DeformConv2d, res: Option<(ValueId, f32)> },
    /// `y = mult · bilinear_upsample(x, factor)` (align_corners=False).
    Bilinear { x: ValueId, y: ValueId, factor: usize, mult: f32 },
    /// Max or average pooling (average counts padding).
    Pool { x: ValueId, y: ValueId, kind: PoolKind, k: usize, stride: usize, pad: usize },
    /// Channel concatenation of values in different buffers (a copy).
    Concat { xs: Vec<ValueId>, y: ValueId },
    /// `y = cat_t(feats[t] · sigmoid(Σ_c embs[t]·reference))` (TSA temporal attention).
    TemporalAttention { embs: Vec<ValueId>, reference: ValueId, feats: Vec<ValueId>, y: ValueId },
    /// `y = feat · sigmoid(attn) · 2 + add` (TSA output).
    TsaCombine { feat: ValueId, attn: ValueId, add: ValueId, y: ValueId },
    /// `y = act(a + b)` (`Relu` or `LeakyRelu`, or `None`).
    Add { a: ValueId, b: ValueId, y: ValueId, act: Activation },
}

impl Node {
    pub fn output(&self) -> ValueId {
        match self {
            Node::Conv { y, .. }
            | Node::Shuffle { y, .. }
            | Node::Unshuffle { y, .. }
            | Node::Upsample { y, .. }
            | Node::Deconv { y, .. }
            | Node::CropAdd { y, .. }
            | Node::Se { y, .. }
            | Node::DeformConv { y, .. }
            | Node::Bilinear { y, .. }
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
            Node::Conv { x, res, res2, .. } => {
                std::iter::once(*x).chain(res.map(|r| r.0)).chain(res2.map(|r| r.0)).collect()
            }
            Node::Shuffle { x, skip, .. } => std::iter::once(*x).chain(*skip).collect(),
            Node::Unshuffle { x, .. }
            | Node::Upsample { x, .. }
            | Node::Deconv { x, .. }
            | Node::Se { x, .. } => {
                vec![*x]
            }
            Node::CropAdd { a, b, .. } => std::iter::once(*a).chain(*b).collect(),
            Node::DeformConv { x, off, res, .. } => [*x, *off].into_iter().chain(res.map(|r| r.0)).collect(),
            Node::Bilinear { x, .. } | Node::Pool { x, .. } => vec![*x],
            Node::Concat { xs, .. } => xs.clone(),
            Node::TemporalAttention { embs, reference, feats, .. } => {
                embs.iter().chain(std::iter::once(reference)).chain(feats).copied().collect()
            }
            Node::TsaCombine { feat, attn, add, .. } => vec![*feat, *attn, *add],
            Node::Add { a, b, .. } => vec![*a, *b],
        }
    }

    /// Inputs the output may be written over in place when they die at this node (same layout
    /// and position in their buffer): the kernels read each such element before writing it.
    pub fn in_place_candidates(&self) -> Vec<ValueId> {
        match self {
            Node::Conv { res, res2, .. } => res.map(|r| r.0).into_iter().chain(res2.map(|r| r.0)).collect(),
            Node::CropAdd { b: Some(b), .. } => vec![*b],
            Node::Se { x, .. } => vec![*x],
            Node::DeformConv { res, .. } => res.map(|r| r.0).into_iter().collect(),
            Node::Add { a, b, .. } => vec![*a, *b],
            _ => Vec::new(),
        }
    }
}

/// Size relation between a graph's input and output, found from its shapes (see
/// [`Graph::geometry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Output pixels per input pixel along each axis.
    pub scale: usize,
    /// Pixels the graph consumes on each side: an input of `n + 2·margin` pixels gives `scale·n`
    /// output pixels (0 for "same"-padded networks; the pre-padding of valid-convolution networks
    /// such as waifu2x, 7 for UpConv7).
    pub margin: usize,
    /// `n` (the input size less the margins) must be a multiple of this (networks that downsample
    /// with strided convolutions need whole down-sampled pixels).
    pub align: usize,
}

/// A static graph. Its first input is value 0; more inputs and several outputs are possible
/// (video models feed cached per-frame features into a window graph).
#[derive(Clone, Debug)]
pub struct Graph {
    nodes: Vec<Node>,
    channels: Vec<usize>,
    views: Vec<Option<View>>,
    written: Vec<bool>,
    inputs: Vec<ValueId>,
    /// The value last written: the output unless outputs are declared.
    output: ValueId,
    declared_outputs: Vec<ValueId>,
}

impl Graph {
    pub fn new(in_channels: usize) -> Self {
        Graph {
            nodes: Vec::new(),
            channels: vec![in_channels],
            views: vec![None],
            written: vec![true],
            inputs: vec![0],
            output: 0,
            declared_outputs: Vec::new(),
        }
    }

    /// The first input.
    pub fn input(&self) -> ValueId {
        self.inputs[0]
    }

    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    /// Another input value (a root).
    pub fn add_input(&mut self, channels: usize) -> ValueId {
        self.channels.push(channels);
        self.views.push(None);
        self.written.push(true);
        let v = self.channels.len() - 1;
        self.inputs.push(v);
        v
    }

    /// Declare the outputs (by default, the value the last node wrote).
    pub fn set_outputs(&mut self, outputs: &[ValueId]) {
        assert!(outputs.iter().all(|&o| self.views[o].is_none()), "outputs must be roots");
        self.declared_outputs = outputs.to_vec();
    }

    pub fn outputs(&self) -> Vec<ValueId> {
        if self.declared_outputs.is_empty() {
            vec![self.output]
        } else {
            self.declared_outputs.clone()
        }
    }

    /// The first output.
    pub fn output(&self) -> ValueId {
        self.declared_outputs.first().copied().unwrap_or(self.output)
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

    /// The view a value is, `None` for a root.
    pub fn view_of(&self, v: ValueId) -> Option<View> {
        self.views[v]
    }

    /// The root whose buffer holds `v`, and the channel offset of `v` in it.
    pub fn root_of(&self, v: ValueId) -> (ValueId, usize) {
        self.views[v].map_or((v, 0), |w| (w.root, w.offset))
    }

    /// A root of `channels` channels that is written only through views ([`Graph::view`]).
    pub fn buffer(&mut self, channels: usize) -> ValueId {
        self.channels.push(channels);
        self.views.push(None);
        // Never written as a whole: its views are.
        self.written.push(true);
        self.channels.len() - 1
    }

    /// Channels `offset..offset + channels` of `parent` (a root or a view) as a value: a node can
    /// write it (once) or read it.
    pub fn view(&mut self, parent: ValueId, offset: usize, channels: usize) -> ValueId {
        assert!(offset + channels <= self.channels[parent], "view outside its parent's channels");
        let (root, base) = self.root_of(parent);
        self.channels.push(channels);
        self.views.push(Some(View { root, offset: base + offset }));
        self.written.push(false);
        self.channels.len() - 1
    }

    /// Make `y` the value `make` writes: a fresh root of `c` channels, or the given unwritten view.
    fn push(&mut self, c: usize, into: Option<ValueId>, make: impl FnOnce(ValueId) -> Node) -> ValueId {
        let y = match into {
            Some(v) => {
                assert_eq!(self.channels[v], c, "destination view channels");
                assert!(self.views[v].is_some() && !self.written[v], "a node may only write a fresh view");
                self.written[v] = true;
                v
            }
            None => {
                self.channels.push(c);
                self.views.push(None);
                self.written.push(true);
                self.channels.len() - 1
            }
        };
        self.nodes.push(make(y));
        self.output = y;
        y
    }

    /// Append a convolution reading `x`.
    pub fn conv(&mut self, x: ValueId, conv: Conv2d) -> ValueId {
        self.conv_into(x, conv, None, None, None)
    }

    /// Append `res + scale·conv(x)`.
    pub fn conv_residual(&mut self, x: ValueId, conv: Conv2d, res: ValueId, scale: f32) -> ValueId {
        self.conv_into(x, conv, Some((res, scale)), None, None)
    }

    /// The general convolution: `res2 + scale2·(res + scale·conv(x))` with optional residuals,
    /// into a fresh root or into the unwritten view `into`.
    pub fn conv_into(
        &mut self,
        x: ValueId,
        conv: Conv2d,
        res: Option<(ValueId, f32)>,
        res2: Option<(ValueId, f32)>,
        into: Option<ValueId>,
    ) -> ValueId {
        assert_eq!(self.channels[x], conv.spec().cin, "conv input channels");
        let cout = conv.spec().cout;
        for (r, _) in res.iter().chain(res2.iter()) {
            assert_eq!(self.channels[*r], cout, "residual channels");
        }
        assert!(res2.is_none() || res.is_some(), "a second residual needs a first one");
        self.push(cout, into, |y| Node::Conv { x, y, conv, res, res2, shuffle: 1 })
    }

    /// `pixel_shuffle(conv(x), r)` computed by the convolution itself (see [`Node::Conv`]); only
    /// for layers where [`Conv2d::writes_shuffled`] holds.
    pub fn conv_shuffled(&mut self, x: ValueId, conv: Conv2d, r: usize) -> ValueId {
        assert_eq!(self.channels[x], conv.spec().cin, "conv input channels");
        let cout = conv.spec().cout;
        assert!(r > 1 && cout.is_multiple_of(r * r), "{cout} channels shuffled by {r}");
        self.push(cout / (r * r), None, |y| Node::Conv { x, y, conv, res: None, res2: None, shuffle: r })
    }

    /// PyTorch's `pixel_shuffle(x, r)`.
    pub fn pixel_shuffle(&mut self, x: ValueId, r: usize) -> ValueId {
        self.shuffle(x, None, r, ShuffleOrder::Torch)
    }

    /// `pixel_shuffle(x, r) + nearest_upsample(skip, r)`.
    pub fn shuffle_add_nearest(&mut self, x: ValueId, skip: ValueId, r: usize) -> ValueId {
        self.shuffle(x, Some(skip), r, ShuffleOrder::Torch)
    }

    /// The general pixel shuffle, reading `x`'s channels in `order`, plus
    /// `nearest_upsample(skip, r)` when `skip` is given.
    pub fn shuffle(&mut self, x: ValueId, skip: Option<ValueId>, r: usize, order: ShuffleOrder) -> ValueId {
        let c = self.channels[x];
        assert!(r > 0 && c.is_multiple_of(r * r), "pixel shuffle of {c} channels by {r}");
        assert!(skip.is_none_or(|s| self.channels[s] == c / (r * r)), "shuffle skip channels");
        self.push(c / (r * r), None, |y| Node::Shuffle { x, skip, y, r, order })
    }

    pub fn pixel_unshuffle(&mut self, x: ValueId, r: usize) -> ValueId {
        assert!(r > 0);
        let c = self.channels[x] * r * r;
        self.push(c, None, |y| Node::Unshuffle { x, y, r })
    }

    pub fn upsample_nearest(&mut self, x: ValueId, r: usize) -> ValueId {
        assert!(r > 0);
        self.push(self.channels[x], None, |y| Node::Upsample { x, y, r })
    }

    /// Append a transposed convolution, into a fresh root or the unwritten view `into`.
    pub fn deconv(&mut self, x: ValueId, deconv: Deconv2d, into: Option<ValueId>) -> ValueId {
        assert_eq!(self.channels[x], deconv.spec().cin, "transposed conv input channels");
        self.push(deconv.spec().cout, into, |y| Node::Deconv { x, y, deconv })
    }

    /// `a[top.., left..] + b`, `a` cropped to `b`'s size.
    pub fn crop_add(&mut self, a: ValueId, top: usize, left: usize, b: ValueId) -> ValueId {
        assert_eq!(self.channels[a], self.channels[b], "crop-add channels");
        self.push(self.channels[b], None, |y| Node::CropAdd { a, top, left, b: Some(b), size: (0, 0), y })
    }

    /// `a[top..top + h, left..left + w]`.
    pub fn crop(&mut self, a: ValueId, top: usize, left: usize, h: usize, w: usize) -> ValueId {
        self.push(self.channels[a], None, |y| Node::CropAdd { a, top, left, b: None, size: (h, w), y })
    }

    /// Squeeze-and-excitation of `x`, into a fresh root or the unwritten view `into`.
    pub fn se(&mut self, x: ValueId, se: SqueezeExcite, into: Option<ValueId>) -> ValueId {
        assert_eq!(self.channels[x], se.c, "SE channels");
        self.push(se.c, into, |y| Node::Se { x, y, se })
    }

    /// Deformable convolution of `x` with offsets from `off`.
    pub fn deform_conv(&mut self, x: ValueId, off: ValueId, conv: DeformConv2d) -> ValueId {
        assert_eq!(self.channels[x], conv.spec().cin, "deformable conv input channels");
        assert!(self.channels[off] >= conv.offset_channels(), "offset channels");
        self.push(conv.spec().cout, None, |y| Node::DeformConv { x, off, y, conv, res: None })
    }

    pub fn upsample_bilinear(&mut self, x: ValueId, factor: usize, mult: f32) -> ValueId {
        assert!(factor > 0);
        self.push(self.channels[x], None, |y| Node::Bilinear { x, y, factor, mult })
    }

    pub fn pool(&mut self, x: ValueId, kind: PoolKind, k: usize, stride: usize, pad: usize) -> ValueId {
        assert!(k > 0 && stride > 0 && pad < k);
        self.push(self.channels[x], None, |y| Node::Pool { x, y, kind, k, stride, pad })
    }

    /// Concatenate values that live in different buffers (values in one buffer can instead be
    /// read as a single view, see [`Graph::view`]).
    pub fn concat(&mut self, xs: &[ValueId]) -> ValueId {
        assert!(!xs.is_empty());
        let c = xs.iter().map(|&v| self.channels[v]).sum();
        self.push(c, None, |y| Node::Concat { xs: xs.to_vec(), y })
    }

    pub fn temporal_attention(&mut self, embs: &[ValueId], reference: ValueId, feats: &[ValueId]) -> ValueId {
        assert_eq!(embs.len(), feats.len());
        assert!(embs.iter().all(|&e| self.channels[e] == self.channels[reference]));
        let c = feats.iter().map(|&v| self.channels[v]).sum();
        self.push(c, None, |y| Node::TemporalAttention {
            embs: embs.to_vec(),
            reference,
            feats: feats.to_vec(),
            y,
        })
    }

    pub fn tsa_combine(&mut self, feat: ValueId, attn: ValueId, add: ValueId) -> ValueId {
        let c = self.channels[feat];
        assert!(self.channels[attn] == c && self.channels[add] == c);
        self.push(c, None, |y| Node::TsaCombine { feat, attn, add, y })
    }

    pub fn add(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.add_act(a, b, Activation::None)
    }

    /// `act(a + b)`: the activation of a convolution whose input was a concatenation, computed
    /// as a sum of convolutions over the parts (PReLU is not supported here).
    pub fn add_act(&mut self, a: ValueId, b: ValueId, act: Activation) -> ValueId {
        let c = self.channels[a];
        assert_eq!(self.channels[b], c, "add channels");
        assert!(act != Activation::PRelu, "add_act has no per-channel slopes");
        self.push(c, None, |y| Node::Add { a, b, y, act })
    }

    /// Spatial size of every value when every input is `h x w`; `None` if a kernel does not fit
    /// or a buffer's views disagree on its size.
    pub fn sizes(&self, h: usize, w: usize) -> Option<Vec<(usize, usize)>> {
        self.sizes_with(&vec![(h, w); self.inputs.len()])
    }

    /// Spatial size of every value for the given input sizes (one per input, in order).
    pub fn sizes_with(&self, inputs: &[(usize, usize)]) -> Option<Vec<(usize, usize)>> {
        assert_eq!(inputs.len(), self.inputs.len(), "one size per input");
        let nv = self.channels.len();
        let mut s = vec![(0, 0); nv];
        for (&v, &hw) in self.inputs.iter().zip(inputs) {
            s[v] = hw;
        }
        let get = |s: &Vec<(usize, usize)>, v: ValueId| -> Option<(usize, usize)> {
            let r = s[self.root_of(v).0];
            (r != (0, 0)).then_some(r)
        };
        for n in &self.nodes {
            let out = match n {
                Node::Conv { x, conv, shuffle, .. } => {
                    let (xh, xw) = get(&s, *x)?;
                    let (h, w) = conv.spec().out_size(xh, xw)?;
                    (h * shuffle, w * shuffle)
                }
                Node::Deconv { x, deconv, .. } => {
                    let (xh, xw) = get(&s, *x)?;
                    deconv.spec().out_size(xh, xw)?
                }
                Node::Shuffle { x, r, .. } | Node::Upsample { x, r, .. } => {
                    let (xh, xw) = get(&s, *x)?;
                    (xh * r, xw * r)
                }
                Node::Unshuffle { x, r, .. } => {
                    let (xh, xw) = get(&s, *x)?;
                    if xh % r != 0 || xw % r != 0 {
                        return None;
                    }
                    (xh / r, xw / r)
                }
                Node::CropAdd { a, top, left, b, size, .. } => {
                    let (ah, aw) = get(&s, *a)?;
                    match b {
                        Some(b) => {
                            let (h, w) = get(&s, *b)?;
                            if (ah, aw) != (h + 2 * top, w + 2 * left) {
                                return None;
                            }
                            (h, w)
                        }
                        None => {
                            if ah < size.0 + top || aw < size.1 + left {
                                return None;
                            }
                            *size
                        }
                    }
                }
                Node::Se { x, .. } => get(&s, *x)?,
                Node::DeformConv { x, off, res, conv, .. } => {
                    let (xh, xw) = get(&s, *x)?;
                    let o = conv.spec().out_size(xh, xw)?;
                    if get(&s, *off)? != o || res.is_some_and(|(r, _)| get(&s, r) != Some(o)) {
                        return None;
                    }
                    o
                }
                Node::Bilinear { x, factor, .. } => {
                    let (xh, xw) = get(&s, *x)?;
                    (xh * factor, xw * factor)
                }
                Node::Pool { x, k, stride, pad, .. } => {
                    let (xh, xw) = get(&s, *x)?;
                    if xh + 2 * pad < *k || xw + 2 * pad < *k {
                        return None;
                    }
                    (pool_out(xh, *k, *stride, *pad), pool_out(xw, *k, *stride, *pad))
                }
                Node::Concat { .. }
                | Node::TemporalAttention { .. }
                | Node::TsaCombine { .. }
                | Node::Add { .. } => {
                    let ins = n.inputs();
                    let first = get(&s, ins[0])?;
                    for &v in &ins {
                        if get(&s, v)? != first {
                            return None;
                        }
                    }
                    first
                }
            };
            if out.0 == 0 || out.1 == 0 {
                return None;
            }
            let root = self.root_of(n.output()).0;
            if s[root] != (0, 0) && s[root] != out {
                return None;
            }
            s[root] = out;
            // Residuals and skips must match the output.
            if let Node::Conv { res, res2, .. } = n {
                for (r, _) in res.iter().chain(res2.iter()) {
                    if get(&s, *r)? != out {
                        return None;
                    }
                }
            }
            if let Node::Shuffle { x, skip: Some(sk), .. } = n {
                if get(&s, *sk)? != get(&s, *x)? {
                    return None;
                }
            }
        }
        for v in 0..nv {
            s[v] = s[self.root_of(v).0];
        }
        Some(s)
    }

    /// Scale, margin and alignment, from the sizes of inputs up to 256 pixels (`None` when no two
    /// sizes fit or the output is not `scale·(n - 2·margin)`).
    pub fn geometry(&self) -> Option<Geometry> {
        let out = |n: usize| self.sizes(n, n).map(|s| s[self.output()].0);
        let ok: Vec<(usize, usize)> = (1..=256).filter_map(|n| out(n).map(|o| (n, o))).collect();
        let (&(n0, o0), &(n1, o1)) = (ok.first()?, ok.get(1)?);
        if o1 <= o0 || (o1 - o0) % (n1 - n0) != 0 {
            return None;
        }
        let scale = (o1 - o0) / (n1 - n0);
        let align = ok.iter().skip(1).fold(0, |g, &(n, _)| gcd(g, n - n0));
        if o0 % scale != 0 || n0 < o0 / scale || (n0 - o0 / scale) % 2 != 0 {
            return None;
        }
        let margin = (n0 - o0 / scale) / 2;
        let consistent = ok.iter().all(|&(n, o)| n >= 2 * margin && o == scale * (n - 2 * margin));
        // Sizes less the margins must be exactly the multiples of `align` (from some minimum on).
        let aligned = (n0 - 2 * margin) % align == 0 && ok.windows(2).all(|p| p[1].0 - p[0].0 == align);
        (consistent && aligned).then_some(Geometry { scale, margin, align })
    }

    /// Whether every output pixel depends on a bounded neighbourhood of the input (false with
    /// squeeze-and-excitation, whose gates pool the whole map, and with deformable convolutions,
    /// which sample wherever their offsets point).
    pub fn is_local(&self) -> bool {
        !self.nodes.iter().any(|n| matches!(n, Node::Se { .. } | Node::DeformConv { .. }))
    }

    /// Radius, in input pixels, of the neighbourhood that an output pixel depends on, around the
    /// input pixel it maps to.
    ///
    /// The offset model: with the graph's [`Geometry`] (scale `s`, margin `P`), output pixel `Y`
    /// maps to input pixel `floor(Y/s)` of the image, which is pixel `floor(Y/s) + P` of the
    /// graph's input (the image pre-padded by `P`). For each output pixel of one period, the
    /// exact interval of input pixels it depends on is found by walking the nodes backwards with
    /// per-channel intervals (so a view depends only on the nodes that wrote its channels):
    /// a convolution (kernel k, stride t, padding p) needs `[a·t - p, b·t - p + k - 1]` of its
    /// input for `[a, b]` of its output; a transposed convolution needs
    /// `[ceil((a + p - k + 1)/t), floor((b + p)/t)]`; pixel shuffle and nearest upsampling by r
    /// need `[floor(a/r), floor(b/r)]`; unshuffle needs `[a·r, b·r + r - 1]`; a crop at offset o
    /// needs `[a + o, b + o]`; element-wise inputs and residuals need `[a, b]`. The global pooling
    /// of squeeze-and-excitation is left out (see [`Graph::is_local`]). The radius is the largest
    /// distance from the mapped pixel to either end of an interval, over both axes.
    ///
    /// Tiles whose input extends this far beyond their owned pixels (`radius - margin` of context
    /// beyond the pre-padding, in whole multiples of `align`) reproduce the untiled result exactly
    /// for local graphs.
    pub fn receptive_field(&self) -> usize {
        let Some(g) = self.geometry() else { return 0 };
        let period = (g.scale * g.align * 8).max(8);
        let mut radius = 0i64;
        for axis in 0..2 {
            for y in 0..period as i64 {
                // Start far from 0 so no interval crosses a boundary of the integer division.
                let y = y + (period as i64) * 64;
                let Some((lo, hi)) = self.input_interval(y, axis) else { continue };
                let centre = y.div_euclid(g.scale as i64) + g.margin as i64;
                radius = radius.max(centre - lo).max(hi - centre);
            }
        }
        radius.max(0) as usize
    }

    /// The interval of input pixels (along `axis`: 0 rows, 1 columns) output pixel `y` depends on.
    fn input_interval(&self, y: i64, axis: usize) -> Option<(i64, i64)> {
        type Iv = Option<(i64, i64)>;
        let union = |a: Iv, b: (i64, i64)| -> Iv { Some(a.map_or(b, |a| (a.0.min(b.0), a.1.max(b.1)))) };
        // Per root, per channel.
        let mut need: Vec<Vec<Iv>> = self
            .channels
            .iter()
            .enumerate()
            .map(|(v, &c)| if self.views[v].is_none() { vec![None; c] } else { Vec::new() })
            .collect();
        let mark = |need: &mut Vec<Vec<Iv>>, v: ValueId, iv: (i64, i64)| {
            let (root, off) = self.root_of(v);
            for slot in &mut need[root][off..off + self.channels[v]] {
                *slot = union(*slot, iv);
            }
        };
        mark(&mut need, self.output(), (y, y));
        let fdiv = |a: i64, b: i64| a.div_euclid(b);
        let cdiv = |a: i64, b: i64| -(-a).div_euclid(b);
        for n in self.nodes.iter().rev() {
            let (root, off) = self.root_of(n.output());
            let Some((a, b)) = need[root][off..off + self.channels[n.output()]]
                .iter()
                .fold(None, |acc: Iv, s| s.map_or(acc, |s| union(acc, s)))
            else {
                continue;
            };
            match n {
                Node::Conv { x, conv, res, res2, shuffle, .. } => {
                    let s = conv.spec();
                    let k = if axis == 0 { s.kh } else { s.kw } as i64;
                    let (t, p) = (s.stride as i64, s.pad as i64);
                    // Output pixels of the fused shuffle come from conv pixels a/r..b/r.
                    let r = *shuffle as i64;
                    let (a, b) = (fdiv(a, r), fdiv(b, r));
                    mark(&mut need, *x, (a * t - p, b * t - p + k - 1));
                    for (r, _) in res.iter().chain(res2.iter()) {
                        mark(&mut need, *r, (a, b));
                    }
                }
                Node::Deconv { x, deconv, .. } => {
                    let s = deconv.spec();
                    let (k, t, p) = (s.k as i64, s.stride as i64, s.pad as i64);
                    let (lo, hi) = (cdiv(a + p - k + 1, t), fdiv(b + p, t));
                    if lo <= hi {
                        mark(&mut need, *x, (lo, hi));
                    }
                }
                Node::Shuffle { x, skip, r, .. } => {
                    let r = *r as i64;
                    mark(&mut need, *x, (fdiv(a, r), fdiv(b, r)));
                    if let Some(sk) = skip {
                        mark(&mut need, *sk, (fdiv(a, r), fdiv(b, r)));
                    }
                }
                Node::Upsample { x, r, .. } => {
                    let r = *r as i64;
                    mark(&mut need, *x, (fdiv(a, r), fdiv(b, r)));
                }
                Node::Unshuffle { x, r, .. } => {
                    let r = *r as i64;
                    mark(&mut need, *x, (a * r, b * r + r - 1));
                }
                Node::CropAdd { a: src, top, left, b: other, .. } => {
                    let o = if axis == 0 { *top } else { *left } as i64;
                    mark(&mut need, *src, (a + o, b + o));
                    if let Some(other) = other {
                        mark(&mut need, *other, (a, b));
                    }
                }
                Node::Se { x, .. } => mark(&mut need, *x, (a, b)),
                // Offsets are data: only the kernel footprint is known (see `is_local`).
                Node::DeformConv { x, off, res, conv, .. } => {
                    let s = conv.spec();
                    let k = if axis == 0 { s.kh } else { s.kw } as i64;
                    let (t, p) = (s.stride as i64, s.pad as i64);
                    mark(&mut need, *x, (a * t - p, b * t - p + k - 1));
                    mark(&mut need, *off, (a, b));
                    if let Some((r, _)) = res {
                        mark(&mut need, *r, (a, b));
                    }
                }
                Node::Bilinear { x, factor, .. } => {
                    let f = *factor as i64;
                    mark(&mut need, *x, (fdiv(a, f) - 1, fdiv(b, f) + 1));
                }
                Node::Pool { x, k, stride, pad, .. } => {
                    let (k, t, p) = (*k as i64, *stride as i64, *pad as i64);
                    mark(&mut need, *x, (a * t - p, b * t - p + k - 1));
                }
                Node::Concat { .. }
                | Node::TemporalAttention { .. }
                | Node::TsaCombine { .. }
                | Node::Add { .. } => {
                    for v in n.inputs() {
                        mark(&mut need, v, (a, b));
                    }
                }
            }
        }
        need[self.input()].iter().fold(None, |acc: Iv, s| s.map_or(acc, |s| union(acc, s)))
    }

    /// Multiply-accumulates for an `h x w` input (every input that size).
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        self.macs_with(&vec![(h, w); self.inputs.len()])
    }

    /// Multiply-accumulates for the given input sizes.
    pub fn macs_with(&self, inputs: &[(usize, usize)]) -> u64 {
        let Some(s) = self.sizes_with(inputs) else { return 0 };
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Conv { y, conv, shuffle, .. } => conv.spec().macs(s[*y].0 / shuffle, s[*y].1 / shuffle),
                Node::Deconv { x, deconv, .. } => deconv.spec().macs(s[*x].0, s[*x].1),
                Node::Se { se, .. } => (2 * se.c * se.mid) as u64,
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
                Node::Deconv { deconv, .. } => deconv.bytes(),
                Node::Se { se, .. } => se.bytes(),
                Node::DeformConv { conv, .. } => conv.bytes(),
                _ => 0,
            })
            .sum()
    }

    /// Overall upscaling factor (output size / input size) along each axis.
    pub fn scale(&self) -> usize {
        self.geometry().map_or(1, |g| g.scale)
    }

    /// The graph cut after node `last` into the nodes up to it, whose output is the root `at`,
    /// and the rest, whose input is `at` (see [`crate::graph::split`] for when that is valid).
    /// Both keep the value numbering; values a part does not touch stay unused in it.
    pub(crate) fn cut_after(&self, last: usize, at: ValueId) -> (Graph, Graph) {
        assert!(last + 1 < self.nodes.len() && self.views[at].is_none());
        let mut head = self.clone();
        head.nodes.truncate(last + 1);
        head.output = at;
        head.declared_outputs = vec![at];
        let mut tail = self.clone();
        tail.nodes.drain(..=last);
        tail.inputs = vec![at];
        (head, tail)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::ConvSpec;
    use crate::kernels::deconv::DeconvSpec;
    use crate::kernels::gemm::Activation;

    fn conv(cin: usize, cout: usize, k: usize, pad: usize, stride: usize) -> Conv2d {
        Conv2d::shape_only(ConvSpec { cin, cout, kh: k, kw: k, stride, pad }, Activation::None)
    }

    #[test]
    fn same_padded_chain() {
        let mut g = Graph::new(3);
        let mut h = g.input();
        for _ in 0..4 {
            h = g.conv(h, conv(if h == 0 { 3 } else { 8 }, 8, 3, 1, 1));
        }
        let h = g.conv(h, conv(8, 12, 3, 1, 1));
        g.pixel_shuffle(h, 2);
        assert_eq!(g.geometry(), Some(Geometry { scale: 2, margin: 0, align: 1 }));
        assert_eq!(g.receptive_field(), 5);
    }

    #[test]
    fn valid_convs_and_transposed_conv_like_upconv7() {
        let mut g = Graph::new(3);
        let mut h = g.input();
        let mut c = 3;
        for _ in 0..6 {
            h = g.conv(h, conv(c, 4, 3, 0, 1));
            c = 4;
        }
        g.deconv(
            h,
            Deconv2d::shape_only(DeconvSpec { cin: 4, cout: 3, k: 4, stride: 2, pad: 3 }, Activation::None),
            None,
        );
        assert_eq!(g.geometry(), Some(Geometry { scale: 2, margin: 7, align: 1 }));
        assert_eq!(g.receptive_field(), 7);
    }

    #[test]
    fn strided_unet_needs_alignment_and_crops_shift_nothing() {
        // conv3 valid x2, down 2, conv3 valid x2, up 2, crop-add skip: a one-level U-Net.
        let mut g = Graph::new(3);
        let x1 = g.conv(g.input(), conv(3, 4, 3, 0, 1));
        let x1 = g.conv(x1, conv(4, 4, 3, 0, 1));
        let d = g.conv(x1, conv(4, 4, 2, 0, 2));
        let d = g.conv(d, conv(4, 4, 3, 0, 1));
        let d = g.conv(d, conv(4, 4, 3, 0, 1));
        let u = g.deconv(
            d,
            Deconv2d::shape_only(DeconvSpec { cin: 4, cout: 4, k: 2, stride: 2, pad: 0 }, Activation::None),
            None,
        );
        g.crop_add(x1, 4, 4, u);
        let geo = g.geometry().unwrap();
        assert_eq!((geo.scale, geo.margin, geo.align), (1, 6, 2));
        assert!(g.receptive_field() >= 6);
    }

    #[test]
    fn views_share_a_buffer_and_have_exact_dependencies() {
        // A dense block: buf = [x | f1 | f2]; f1 = conv(x), f2 = conv([x, f1]).
        let mut g = Graph::new(2);
        let buf = g.buffer(6);
        let x = g.view(buf, 0, 2);
        let first = g.conv_into(g.input(), conv(2, 2, 1, 0, 1), None, None, Some(x));
        assert_eq!(first, x);
        let f1 = g.view(buf, 2, 2);
        g.conv_into(x, conv(2, 2, 3, 1, 1), None, None, Some(f1));
        let pre = g.view(buf, 0, 4);
        let f2 = g.view(buf, 4, 2);
        g.conv_into(pre, conv(4, 2, 3, 1, 1), None, None, Some(f2));
        let all = g.view(buf, 0, 6);
        g.conv(all, conv(6, 3, 1, 0, 1));
        assert_eq!(g.root_of(f2), (buf, 4));
        let s = g.sizes(5, 7).unwrap();
        assert_eq!(s[f2], (5, 7));
        // 1x1, 3x3 (f1), 3x3 (f2 reading f1): radius 2 through f2, not more.
        assert_eq!(g.receptive_field(), 2);
        assert_eq!(g.scale(), 1);
    }

    #[test]
    #[should_panic(expected = "fresh view")]
    fn a_view_is_written_once() {
        let mut g = Graph::new(2);
        let buf = g.buffer(4);
        let v = g.view(buf, 0, 2);
        g.conv_into(
            g.input(),
            Conv2d::shape_only(ConvSpec::same(2, 2, 1), Activation::None),
            None,
            None,
            Some(v),
        );
        g.conv_into(
            g.input(),
            Conv2d::shape_only(ConvSpec::same(2, 2, 1), Activation::None),
            None,
            None,
            Some(v),
        );
    }

    /// A conv that writes its output pixel-shuffled: same sizes, receptive field and cost as the
    /// conv + grouped shuffle it replaces, and the same bits on every level.
    #[test]
    fn fused_shuffle_matches_conv_then_shuffle() {
        use crate::cpu::CpuLevel;
        use crate::graph::{Arena, Plan};
        use crate::kernels::conv::ConvAlgo;
        use crate::kernels::testutil::rand_vec;
        let (c, r, f) = (16, 2, 16);
        let spec = |cin, cout| ConvSpec::same(cin, cout, 3);
        let (w1, w2) = (rand_vec(f * 3 * 9, 1, 0.3), rand_vec(4 * c * f * 9, 2, 0.1));
        let (b2, w3) = (rand_vec(4 * c, 3, 0.1), rand_vec(3 * c * 9, 4, 0.1));
        let (h, w) = (11, 7);
        let x = rand_vec(h * w * 3, 5, 1.0);
        for level in CpuLevel::supported() {
            assert!(Conv2d::writes_shuffled(level, &spec(f, 4 * c), ConvAlgo::Auto, r));
            let mk = |cin, cout, wt: &[f32], b: Option<&[f32]>| {
                Conv2d::with_algo(
                    level,
                    spec(cin, cout),
                    wt,
                    b,
                    Activation::LeakyRelu(0.1),
                    None,
                    ConvAlgo::Auto,
                )
            };
            let build = |fused: bool| {
                let mut g = Graph::new(3);
                let h1 = g.conv(g.input(), mk(3, f, &w1, None));
                let up = mk(f, 4 * c, &w2, Some(&b2));
                let s = if fused {
                    g.conv_shuffled(h1, up, r)
                } else {
                    let t = g.conv(h1, up);
                    g.shuffle(t, None, r, ShuffleOrder::Grouped)
                };
                g.conv(s, mk(c, 3, &w3, None));
                g
            };
            let (plain, fused) = (build(false), build(true));
            assert_eq!(plain.geometry(), fused.geometry());
            assert_eq!(plain.receptive_field(), fused.receptive_field());
            assert_eq!(plain.macs(h, w), fused.macs(h, w));
            let run = |g: &Graph| {
                let plan = Plan::new(g, h, w).expect("plan");
                g.run(
                    &plan,
                    &mut Arena::new(),
                    |buf, l| {
                        for y in 0..h {
                            for xx in 0..w {
                                let o = l.offset(y as isize, xx as isize) as usize;
                                buf[o..o + 3].copy_from_slice(&x[(y * w + xx) * 3..][..3]);
                            }
                        }
                    },
                    |buf, _| buf.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                )
            };
            assert_eq!(run(&plain), run(&fused), "{level}");
        }
    }
}
