//! Graph nodes and their static properties (shapes, receptive field, cost).

use crate::kernels::conv::Conv2d;

/// Index of a value (an activation tensor) in a [`Graph`].
pub type ValueId = usize;

/// One operation. Every node writes exactly one new value.
#[derive(Clone, Debug)]
pub enum Node {
    /// `y = act(conv(x) + bias)`, then `y = res + scale·y` when `res` is set.
    Conv { x: ValueId, y: ValueId, conv: Conv2d, res: Option<(ValueId, f32)> },
    /// `y = pixel_shuffle(x, r)`, plus `nearest_upsample(skip, r)` when `skip` is set.
    Shuffle { x: ValueId, skip: Option<ValueId>, y: ValueId, r: usize },
}

impl Node {
    pub fn output(&self) -> ValueId {
        match self {
            Node::Conv { y, .. } | Node::Shuffle { y, .. } => *y,
        }
    }

    /// Values this node reads.
    pub fn inputs(&self) -> Vec<ValueId> {
        match self {
            Node::Conv { x, res, .. } => std::iter::once(*x).chain(res.map(|r| r.0)).collect(),
            Node::Shuffle { x, skip, .. } => std::iter::once(*x).chain(*skip).collect(),
        }
    }
}

/// A static graph with one input and one output value.
#[derive(Clone, Debug)]
pub struct Graph {
    nodes: Vec<Node>,
    channels: Vec<usize>,
    input: ValueId,
    output: ValueId,
}

impl Graph {
    pub fn new(in_channels: usize) -> Self {
        Graph { nodes: Vec::new(), channels: vec![in_channels], input: 0, output: 0 }
    }

    pub fn input(&self) -> ValueId {
        self.input
    }

    pub fn output(&self) -> ValueId {
        self.output
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
        self.output = y;
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

    /// Spatial size of every value for an `h x w` input; `None` if a kernel does not fit.
    pub fn sizes(&self, h: usize, w: usize) -> Option<Vec<(usize, usize)>> {
        let mut s = vec![(0, 0); self.channels.len()];
        s[self.input] = (h, w);
        for n in &self.nodes {
            s[n.output()] = match n {
                Node::Conv { x, conv, .. } => conv.spec().out_size(s[*x].0, s[*x].1)?,
                Node::Shuffle { x, r, .. } => (s[*x].0 * r, s[*x].1 * r),
            };
            if s[n.output()].0 == 0 || s[n.output()].1 == 0 {
                return None;
            }
        }
        Some(s)
    }

    /// Radius, in input pixels, of the neighbourhood that an output pixel depends on, around the
    /// input pixel it maps to (output pixel Y at scale s maps to input pixel floor(Y/s)). Tiles
    /// that overlap by at least this much reproduce the untiled result exactly.
    pub fn receptive_field(&self) -> usize {
        let mut r: Vec<Option<usize>> = vec![None; self.channels.len()];
        r[self.output] = Some(0);
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
                Node::Shuffle { x, skip, r: f, .. } => {
                    need(*x, ry.div_ceil(*f), &mut r);
                    if let Some(sv) = skip {
                        need(*sv, ry.div_ceil(*f), &mut r);
                    }
                }
            }
        }
        r[self.input].unwrap_or(0)
    }

    /// Multiply-accumulates for an `h x w` input.
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let Some(s) = self.sizes(h, w) else { return 0 };
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Conv { y, conv, .. } => conv.spec().macs(s[*y].0, s[*y].1),
                Node::Shuffle { .. } => 0,
            })
            .sum()
    }

    /// Bytes of prepared (packed) weights.
    pub fn weight_bytes(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Conv { conv, .. } => conv.bytes(),
                Node::Shuffle { .. } => 0,
            })
            .sum()
    }

    /// Overall upscaling factor (output size / input size) along each axis.
    pub fn scale(&self) -> usize {
        let s = self.sizes(64, 64).unwrap_or_default();
        s.get(self.output).map_or(1, |o| o.0 / 64)
    }
}
