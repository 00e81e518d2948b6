//! A prepared network: the static graph with packed weights for one CPU level and one scale, plus
//! the affine maps between [0,1] pixels and the network's own value range.

use crate::cpu::CpuLevel;
use crate::error::{Error, Result};
use crate::graph::{Arena, Graph, Plan};
use crate::tensor::Layout;

pub struct Network {
    pub(crate) graph: Graph,
    pub(crate) scale: usize,
    pub(crate) level: CpuLevel,
    /// Per input channel `(a, b)`: the network sees `a·x + b` for pixel value x in [0,1].
    pub(crate) in_affine: Vec<(f32, f32)>,
    /// Per output channel `(a, b)`: pixel value = `a·y + b` for network output y.
    pub(crate) out_affine: Vec<(f32, f32)>,
}

impl Network {
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

    /// Receptive-field radius in input pixels.
    pub fn receptive_field(&self) -> usize {
        self.graph.receptive_field()
    }

    pub fn input_affine(&self) -> &[(f32, f32)] {
        &self.in_affine
    }

    pub fn output_affine(&self) -> &[(f32, f32)] {
        &self.out_affine
    }

    /// Memory plan for an `h x w` input.
    pub fn plan(&self, h: usize, w: usize) -> Result<Plan> {
        Plan::new(&self.graph, h, w)
            .ok_or_else(|| Error::Model(format!("input of {w}x{h} pixels is too small for this network")))
    }

    /// Run on dense HWC pixels in [0,1] and return dense HWC output pixels (unclamped), applying
    /// the input and output maps. Used by tests and simple embedders; the tiled pipeline uses
    /// [`Network::run_with`] to avoid intermediate copies.
    pub fn run_hwc(&self, x: &[f32], h: usize, w: usize, arena: &mut Arena) -> Result<Vec<f32>> {
        let cin = self.in_channels();
        if x.len() != h * w * cin {
            return Err(Error::Usage(format!("{} values for a {w}x{h}x{cin} input", x.len())));
        }
        let plan = self.plan(h, w)?;
        Ok(self.run_with(
            &plan,
            arena,
            |buf, l| {
                for y in 0..h {
                    for xx in 0..w {
                        let o = l.offset(y as isize, xx as isize) as usize;
                        for c in 0..cin {
                            let (a, b) = self.in_affine[c];
                            buf[o + c] = a * x[(y * w + xx) * cin + c] + b;
                        }
                    }
                }
            },
            |buf, l| {
                let mut out = Vec::with_capacity(l.h * l.w * l.c);
                for y in 0..l.h {
                    for xx in 0..l.w {
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
