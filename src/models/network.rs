//! A prepared network: the static graph with packed weights for one CPU level and one scale, plus
//! the affine maps between [0,1] pixels and the network's own value range, and how images are
//! padded for it.

use crate::cpu::CpuLevel;
use crate::error::{Error, Result};
use crate::graph::{Arena, Graph, Plan};
use crate::tensor::Layout;

/// How pixels beyond an image edge are made up when a network needs them: for the pre-padding
/// of valid-convolution networks (waifu2x) and to round a size up to the network's alignment
/// (x2/x1 RRDBNet, CUNet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EdgeMode {
    /// Repeat the edge pixel (waifu2x-ncnn-vulkan clamps coordinates).
    #[default]
    Replicate,
    /// Mirror without repeating the edge pixel (PyTorch `reflect`, as Real-ESRGAN pads to a
    /// multiple of the unshuffle factor); falls back to the edge pixel where the image is too
    /// small to mirror.
    Reflect,
}

impl EdgeMode {
    /// Source index for coordinate `i` (possibly outside `0..n`).
    #[inline]
    pub fn index(self, i: isize, n: usize) -> usize {
        let last = n as isize - 1;
        let j = match self {
            EdgeMode::Replicate => i,
            EdgeMode::Reflect => {
                let m = if i < 0 {
                    -i
                } else if i > last {
                    2 * last - i
                } else {
                    i
                };
                // Too far out to mirror: the nearest edge pixel.
                if (0..=last).contains(&m) {
                    m
                } else {
                    i
                }
            }
        };
        j.clamp(0, last.max(0)) as usize
    }
}

pub struct Network {
    pub(crate) graph: Graph,
    pub(crate) scale: usize,
    pub(crate) level: CpuLevel,
    /// Per input channel `(a, b)`: the network sees `a·x + b` for pixel value x in [0,1].
    pub(crate) in_affine: Vec<(f32, f32)>,
    /// Per output channel `(a, b)`: pixel value = `a·y + b` for network output y.
    pub(crate) out_affine: Vec<(f32, f32)>,
    /// Pre-padding on each side (see [`crate::graph::Geometry::margin`]).
    pub(crate) margin: usize,
    /// Image sizes are rounded up to a multiple of this before running.
    pub(crate) align: usize,
    pub(crate) edge: EdgeMode,
    pub(crate) receptive_field: usize,
}

impl Network {
    /// Wrap a built graph, checking that its shapes give `scale` and finding its geometry.
    pub(crate) fn new(
        graph: Graph,
        scale: usize,
        level: CpuLevel,
        in_affine: Vec<(f32, f32)>,
        out_affine: Vec<(f32, f32)>,
        edge: EdgeMode,
    ) -> Result<Network> {
        let g = graph.geometry().ok_or_else(|| {
            Error::Model("the network's output size is not a fixed multiple of its input size".into())
        })?;
        if g.scale != scale {
            return Err(Error::Model(format!(
                "the network upscales x{} where x{scale} was expected",
                g.scale
            )));
        }
        let receptive_field = graph.receptive_field();
        Ok(Network {
            graph,
            scale,
            level,
            in_affine,
            out_affine,
            margin: g.margin,
            align: g.align,
            edge,
            receptive_field,
        })
    }

    pub fn scale(&self) -> usize {
        self.scale
    }

    pub fn level(&self) -> CpuLevel {
        self.level
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn in_channels(&self) -> usize {
        self.graph.channels(self.graph.input())
    }

    pub fn out_channels(&self) -> usize {
        self.graph.channels(self.graph.output())
    }

    /// Receptive-field radius in input pixels (see [`Graph::receptive_field`]).
    pub fn receptive_field(&self) -> usize {
        self.receptive_field
    }

    /// Pixels of pre-padding the network consumes on each side.
    pub fn margin(&self) -> usize {
        self.margin
    }

    /// Image sizes are rounded up to a multiple of this (with [`Network::edge_mode`] pixels).
    pub fn align(&self) -> usize {
        self.align
    }

    pub fn edge_mode(&self) -> EdgeMode {
        self.edge
    }

    /// Whether tiles can reproduce the untiled output exactly (no global pooling).
    pub fn is_local(&self) -> bool {
        self.graph.is_local()
    }

    /// Context, in input pixels, that tiles need beyond the pre-padding for exact results, as a
    /// multiple of the alignment.
    pub fn tile_context(&self) -> usize {
        self.receptive_field.saturating_sub(self.margin).next_multiple_of(self.align)
    }

    pub fn input_affine(&self) -> &[(f32, f32)] {
        &self.in_affine
    }

    pub fn output_affine(&self) -> &[(f32, f32)] {
        &self.out_affine
    }

    /// Memory plan for a graph input of `h x w` pixels (pre-padding included).
    pub fn plan(&self, h: usize, w: usize) -> Result<Plan> {
        Plan::new(&self.graph, h, w)
            .ok_or_else(|| Error::Model(format!("input of {w}x{h} pixels is too small for this network")))
    }

    /// Graph input size for an image region of `h x w` pixels: rounded up to the alignment, plus
    /// the pre-padding on both sides.
    pub fn input_size(&self, h: usize, w: usize) -> (usize, usize) {
        let f = |n: usize| n.next_multiple_of(self.align) + 2 * self.margin;
        (f(h), f(w))
    }

    /// Run on a dense HWC image in [0,1] and return the dense HWC output image (unclamped),
    /// `scale·h x scale·w`: pads the image as the network needs (pre-padding, alignment) with its
    /// edge mode, applies the input and output maps, and crops the output. Used by tests and
    /// simple embedders; the tiled pipeline uses [`Network::run_with`] to avoid copies.
    pub fn run_hwc(&self, x: &[f32], h: usize, w: usize, arena: &mut Arena) -> Result<Vec<f32>> {
        let cin = self.in_channels();
        if x.len() != h * w * cin || h == 0 || w == 0 {
            return Err(Error::Usage(format!("{} values for a {w}x{h}x{cin} input", x.len())));
        }
        let (ih, iw) = self.input_size(h, w);
        let plan = self.plan(ih, iw)?;
        let m = self.margin as isize;
        let s = self.scale;
        Ok(self.run_with(
            &plan,
            arena,
            |buf, l| {
                for y in 0..ih {
                    let sy = self.edge.index(y as isize - m, h);
                    for xx in 0..iw {
                        let sx = self.edge.index(xx as isize - m, w);
                        let o = l.offset(y as isize, xx as isize) as usize;
                        for c in 0..cin {
                            let (a, b) = self.in_affine[c];
                            buf[o + c] = a * x[(sy * w + sx) * cin + c] + b;
                        }
                    }
                }
            },
            |buf, l| {
                let mut out = Vec::with_capacity(h * s * w * s * l.c);
                for y in 0..h * s {
                    for xx in 0..w * s {
                        let o = l.offset(y as isize, xx as isize) as usize;
                        for c in 0..l.c {
                            let (a, b) = self.out_affine[c];
                            out.push(a * buf[o + c] + b);
                        }
                    }
                }
                out
            },
        ))
    }

    /// The network as a body that keeps the input's resolution and an upscaling tail
    /// ([`crate::graph::split`]), or `None` where it does not split that way (pre-padding,
    /// alignment, global pooling, a skip from the image to the output). The body takes the
    /// image (this network's input map and edge mode) and gives features; the tail takes the
    /// features and gives the output (this network's output map).
    pub fn split_tail(&self) -> Option<(Network, Network)> {
        if self.margin != 0 || self.align != 1 || !self.is_local() {
            return None;
        }
        let cut = crate::graph::split::tail_cut(&self.graph)?;
        let (head, tail) = crate::graph::split::split(&self.graph, cut);
        let c = head.channels(cut.at);
        let identity = vec![(1.0, 0.0); c];
        let body =
            Network::new(head, 1, self.level, self.in_affine.clone(), identity.clone(), self.edge).ok()?;
        let tail =
            Network::new(tail, self.scale, self.level, identity, self.out_affine.clone(), self.edge).ok()?;
        let plain = |n: &Network| n.margin == 0 && n.align == 1;
        (plain(&body) && plain(&tail)).then_some((body, tail))
    }

    /// Run with caller-supplied input filling and output reading (network value range; apply
    /// [`Network::input_affine`] / [`Network::output_affine`] yourself).
    pub fn run_with<R>(
        &self,
        plan: &Plan,
        arena: &mut Arena,
        fill: impl FnOnce(&mut [f32], &Layout),
        read: impl FnOnce(&[f32], &Layout) -> R,
    ) -> R {
        self.graph.run(plan, arena, fill, read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_modes() {
        let r: Vec<usize> = (-3..8).map(|i| EdgeMode::Replicate.index(i, 5)).collect();
        assert_eq!(r, [0, 0, 0, 0, 1, 2, 3, 4, 4, 4, 4]);
        let m: Vec<usize> = (-3..8).map(|i| EdgeMode::Reflect.index(i, 5)).collect();
        assert_eq!(m, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(EdgeMode::Reflect.index(2, 1), 0);
        assert_eq!(EdgeMode::Reflect.index(-9, 3), 0);
    }
}
