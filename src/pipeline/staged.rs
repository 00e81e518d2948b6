//! Two-stage tiling for networks that split into a body at the input's resolution and an
//! upscaling tail ([`crate::graph::split`]). The body runs over large tiles with its own wide
//! context and leaves its features for the tile's owned pixels (plus the tail's few pixels of
//! context) in one buffer; the tail then runs over small tiles of those features. Every tile of
//! either stage still sees its stage's full receptive field, so the result equals the whole-image
//! result exactly, as with single-stage tiles; but the memory that bounds the tile size is the
//! body's (a few channels per pixel at the input's resolution) instead of the tail's (64 channels
//! at up to 16 times the pixels), so under the same budget the body's tiles are several times
//! larger and far less context is recomputed.

use super::tile::{largest_tile, tiles, tiles_aligned, Tile};
use super::tta::Dihedral;
use super::upscale::{fill_tile, read_tile, Edge, Route};
use crate::error::Result;
use crate::graph::{Arena, Plan};
use crate::io::image::{ImageView, Samples};
use crate::models::Network;
use crate::tensor::Layout;
use std::collections::HashMap;

/// Tile edges of a staged run, in input pixels (0: the whole image in one piece).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StagedTiles {
    pub body: usize,
    pub tail: usize,
}

pub(super) struct Staged {
    body: Network,
    tail: Network,
    /// Feature channels at the cut.
    c: usize,
    body_plans: HashMap<(usize, usize), Plan>,
    tail_plans: HashMap<(usize, usize), Plan>,
    /// The body's features over one body tile's owned pixels and the tail's context (HWC).
    feat: Vec<f32>,
}

/// Smallest tail tile the automatic choice goes down to.
const MIN_TAIL_TILE: usize = 16;

impl Staged {
    pub fn new(net: &Network) -> Option<Staged> {
        let (body, tail) = net.split_tail()?;
        let c = tail.in_channels();
        Some(Staged {
            body,
            tail,
            c,
            body_plans: HashMap::new(),
            tail_plans: HashMap::new(),
            feat: Vec::new(),
        })
    }

    /// Context the tail's tiles need around their owned pixels.
    fn tail_ctx(&self) -> usize {
        self.tail.tile_context()
    }

    /// Context the body's tiles need: its own plus the tail's, whose context pixels the body
    /// must compute exactly too.
    fn body_ctx(&self) -> usize {
        self.body.tile_context() + self.tail_ctx()
    }

    fn feat_bytes(&self, h: usize, w: usize) -> usize {
        h.saturating_mul(w).saturating_mul(self.c * 4)
    }

    fn arena_bytes(net: &Network, h: usize, w: usize) -> usize {
        net.plan(h, w).map_or(usize::MAX, |p| p.arena_bytes())
    }

    /// Bytes of a body tile of edge `t`: its activations plus the feature buffer.
    fn body_bytes(&self, h: usize, w: usize, t: usize) -> usize {
        let (bc, tc) = (self.body_ctx(), self.tail_ctx());
        let (oh, ow) = (owned(h, t, bc), owned(w, t, bc));
        let run = Self::arena_bytes(&self.body, (oh + 2 * bc).min(h), (ow + 2 * bc).min(w));
        run.saturating_add(self.feat_bytes((oh + 2 * tc).min(h), (ow + 2 * tc).min(w)))
    }

    /// Bytes of a tail tile of edge `tt` inside a body tile of edge `t`: its activations plus the
    /// feature buffer.
    fn tail_bytes(&self, h: usize, w: usize, t: usize, tt: usize) -> usize {
        let (bc, tc) = (self.body_ctx(), self.tail_ctx());
        let (oh, ow) = (owned(h, t, bc), owned(w, t, bc));
        let feat = self.feat_bytes((oh + 2 * tc).min(h), (ow + 2 * tc).min(w));
        let (sh, sw) = (owned(oh, tt, tc), owned(ow, tt, tc));
        Self::arena_bytes(&self.tail, (sh + 2 * tc).min(h), (sw + 2 * tc).min(w)).saturating_add(feat)
    }

    /// The largest tiles under `budget` bytes (edges in multiples of 16), or the given ones.
    pub fn tiles_for(&self, h: usize, w: usize, budget: usize, body: usize, tail: usize) -> StagedTiles {
        let n = h.max(w);
        let whole_or = |fits: &dyn Fn(usize) -> bool, min: usize| {
            if fits(0) {
                0
            } else {
                largest_tile(n, min, fits)
            }
        };
        let body = if body > 0 { body } else { whole_or(&|t| self.body_bytes(h, w, t) <= budget, 16) };
        let tail = if tail > 0 {
            tail
        } else {
            whole_or(&|t| self.tail_bytes(h, w, body, t) <= budget, MIN_TAIL_TILE)
        };
        StagedTiles { body, tail }
    }

    /// Peak working bytes with tiles `st`.
    pub fn working_bytes(&self, h: usize, w: usize, st: StagedTiles) -> usize {
        self.body_bytes(h, w, st.body).max(self.tail_bytes(h, w, st.body, st.tail))
    }

    fn body_tiles(&self, h: usize, w: usize, st: StagedTiles) -> Vec<Tile> {
        tiles_aligned(h, w, st.body, self.body_ctx(), 1)
    }

    /// The tail's tiles over the owned pixels of body tile `t`, their context reaching into the
    /// body tile's feature margin (never past the image).
    fn tail_tiles(&self, t: &Tile, h: usize, w: usize, edge: usize) -> Vec<Tile> {
        let tc = self.tail_ctx();
        tiles(t.y1 - t.y0, t.x1 - t.x0, edge, tc)
            .into_iter()
            .map(|s| {
                let (y0, y1, x0, x1) = (s.y0 + t.y0, s.y1 + t.y0, s.x0 + t.x0, s.x1 + t.x0);
                Tile {
                    y0,
                    y1,
                    x0,
                    x1,
                    py0: y0.saturating_sub(tc),
                    py1: (y1 + tc).min(h),
                    px0: x0.saturating_sub(tc),
                    px1: (x1 + tc).min(w),
                }
            })
            .collect()
    }

    /// Multiply-accumulates of a staged run, context recomputation included.
    pub fn macs(&self, h: usize, w: usize, st: StagedTiles) -> u64 {
        self.body_tiles(h, w, st)
            .iter()
            .map(|t| {
                let tail: u64 = self
                    .tail_tiles(t, h, w, st.tail)
                    .iter()
                    .map(|s| self.tail.graph().macs(s.padded_h(), s.padded_w()))
                    .sum();
                self.body.graph().macs(t.padded_h(), t.padded_w()) + tail
            })
            .sum()
    }

    /// Number of body tiles.
    pub fn count(&self, h: usize, w: usize, st: StagedTiles) -> usize {
        self.body_tiles(h, w, st).len()
    }

    /// Run one route of an image into `out`, calling `progress()` after each body tile.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        arena: &mut Arena,
        img: &ImageView,
        route: Route,
        out: &mut Samples,
        st: StagedTiles,
        progress: &mut dyn FnMut(),
    ) -> Result<()> {
        let (h, w, c) = (img.height as usize, img.width as usize, img.channels as usize);
        let s = self.tail.scale();
        let src_ch = route.sources(c);
        let in_aff = self.body.input_affine().to_vec();
        let out_aff = self.tail.output_affine().to_vec();
        let edge = Edge { mode: self.body.edge_mode(), margin: 0, h, w };
        let tc = self.tail_ctx();
        let fc = self.c;
        for t in self.body_tiles(h, w, st) {
            super::cancel::check()?;
            // The feature rectangle: owned pixels plus the tail's context, inside the run.
            let (fy0, fy1) = (t.y0.saturating_sub(tc), (t.y1 + tc).min(h));
            let (fx0, fx1) = (t.x0.saturating_sub(tc), (t.x1 + tc).min(w));
            let fw = fx1 - fx0;
            self.feat.resize((fy1 - fy0) * fw * fc, 0.0);
            let key = (t.padded_h(), t.padded_w());
            if !self.body_plans.contains_key(&key) {
                self.body_plans.insert(key, self.body.plan(key.0, key.1)?);
            }
            let feat = &mut self.feat;
            let fill = |buf: &mut [f32], l: &Layout| {
                fill_tile(buf, l, img, &edge, &t, Dihedral::IDENTITY, src_ch, &in_aff)
            };
            let keep = |buf: &[f32], l: &Layout| {
                for (i, y) in (fy0..fy1).enumerate() {
                    let dst = &mut feat[i * fw * fc..(i + 1) * fw * fc];
                    copy_row(dst, buf, l, (y - t.py0) as isize, (fx0 - t.px0) as isize, fw);
                }
            };
            self.body.run_with(&self.body_plans[&key], arena, fill, keep);
            for sub in self.tail_tiles(&t, h, w, st.tail) {
                let key = (sub.padded_h(), sub.padded_w());
                if !self.tail_plans.contains_key(&key) {
                    self.tail_plans.insert(key, self.tail.plan(key.0, key.1)?);
                }
                let feat = &self.feat;
                let fill = |buf: &mut [f32], l: &Layout| {
                    for (i, y) in (sub.py0..sub.py1).enumerate() {
                        let at = ((y - fy0) * fw + (sub.px0 - fx0)) * fc;
                        paste_row(buf, l, i as isize, &feat[at..at + sub.padded_w() * fc]);
                    }
                };
                let ow = w * s;
                let read = |buf: &[f32], l: &Layout| match out {
                    Samples::U8(o) => read_tile(buf, l, o, ow, c, &sub, s, route, &out_aff, 255.0),
                    Samples::U16(o) => read_tile(buf, l, o, ow, c, &sub, s, route, &out_aff, 65535.0),
                };
                self.tail.run_with(&self.tail_plans[&key], arena, fill, read);
            }
            progress();
        }
        Ok(())
    }
}

/// Owned pixels along an axis of `n` of a tile of edge `t` with context `pad`, as
/// [`tiles_aligned`] cuts it: the whole axis when `t` is 0 or one tile with its context spans it.
fn owned(n: usize, t: usize, pad: usize) -> usize {
    if t == 0 || t + 2 * pad >= n {
        n
    } else {
        t
    }
}

/// Copy `n` pixels of row `y` of a tensor, from column `x`, into a dense HWC row.
fn copy_row(dst: &mut [f32], buf: &[f32], l: &Layout, y: isize, x: isize, n: usize) {
    let c = l.c;
    for j in 0..n {
        let o = l.offset(y, x + j as isize) as usize;
        dst[j * c..(j + 1) * c].copy_from_slice(&buf[o..o + c]);
    }
}

/// Write a dense HWC row into row `y` of a tensor, from column 0.
fn paste_row(buf: &mut [f32], l: &Layout, y: isize, src: &[f32]) {
    let c = l.c;
    for (j, px) in src.chunks_exact(c).enumerate() {
        let o = l.offset(y, j as isize) as usize;
        buf[o..o + c].copy_from_slice(px);
    }
}
