//! Upscaling whole images tile by tile. Pixels are converted from 8/16-bit samples straight into
//! the network's input buffer and from its output buffer straight into the 8/16-bit output image,
//! so no full-size float copy of either image ever exists.

use super::cancel;
use super::staged::{Staged, StagedTiles};
use super::tile::{largest_tile, tiles_aligned, Tile};
use super::tta::{Dihedral, Ensemble};
use crate::error::{Error, Result};
use crate::graph::stream::{StreamArena, StreamPlan};
use crate::graph::{Arena, Plan};
use crate::io::image::{ImageView, Samples, SamplesRef};
use crate::kernels::resize;
use crate::models::Network;
use crate::tensor::Layout;
use rayon::prelude::*;
use std::collections::HashMap;

/// How the alpha channel is upscaled. It is never dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AlphaMode {
    /// Bicubic interpolation (Keys, a = -0.5): cheap and smooth.
    #[default]
    Bicubic,
    /// Run the alpha plane through the network as a gray image (sharper edges, one more pass).
    Model,
}

/// Working memory the automatic tile size aims to stay under (activations of one tile, or the
/// windows of a streamed stripe) by default, and the least that `superres` gives a machine
/// ([`crate::pipeline::memory::auto_budget`]). 96 MiB keeps a 1920x1080 x4 upscale to PNG with
/// the default model under 256 MiB peak RSS (198 MB measured, 100 MB of it the output image) for
/// boards with little memory; a larger budget saves the side context of fewer, wider stripes or
/// tiles and the fixed cost per layer call of short bands (16-30% of the time of the shipped
/// models on two threads, see [`crate::pipeline::memory::MAX_AUTO_BUDGET`]).
pub const DEFAULT_MAX_WORKING_BYTES: usize = 96 << 20;

/// Most times the untiled multiply-accumulates that an image's schedule may cost before
/// [`UpscaleOptions::grow_budget`] raises its budget.
pub const MAX_RECOMPUTE: f64 = 2.0;

/// Largest budget [`UpscaleOptions::grow_budget`] tries.
pub const MAX_GROWN_BYTES: usize = 32 << 30;

#[derive(Clone, Debug)]
pub struct UpscaleOptions {
    /// Owned tile edge in input pixels; 0 picks the largest tile that fits `max_working_bytes`
    /// (the whole image when it fits).
    pub tile: usize,
    /// Context around each tile; `None` uses the network's receptive field, which makes tiled
    /// output identical to untiled output for networks with a finite receptive field.
    pub tile_pad: Option<usize>,
    /// Activation memory budget for the automatic tile size.
    pub max_working_bytes: usize,
    /// Whether an image may run under a larger budget than `max_working_bytes` where exact
    /// tiles under it would cost more than [`MAX_RECOMPUTE`] times the untiled work: the
    /// smallest power of two up to `max_grown_bytes` that brings it within (see
    /// [`Upscaler::budget`]). A network with a very wide receptive field needs that much
    /// context around every tile: RRDBNet (Real-ESRGAN x4plus, 349 pixels) on a 1920x1080
    /// image under 96 MiB had no exact schedule but 16-pixel tiles that each computed 714x714
    /// pixels, 1,400 times the untiled work in 1.5 GiB; under 2 GiB it streams with 1.36x.
    /// Ignored when `tile` is set. `superres upscale` clears it when `--max-mem` is given.
    pub grow_budget: bool,
    /// Largest budget [`UpscaleOptions::grow_budget`] grows to: [`MAX_GROWN_BYTES`], or
    /// [`crate::pipeline::memory::growth_limit`] of the machine (`superres upscale`), so that a
    /// small board recomputes context rather than running out of memory.
    pub max_grown_bytes: usize,
    pub alpha: AlphaMode,
    /// Output bits per sample (8 or 16); `None` keeps the input's.
    pub depth: Option<u8>,
    /// Self-ensemble (test-time augmentation): each tile is run once per transform and the
    /// results averaged before quantisation. Costs one network run per transform.
    pub tta: Ensemble,
    /// Whether networks that split into a body and an upscaling tail are tiled in two stages
    /// (see [`crate::pipeline::staged`]).
    pub staging: Staging,
    /// Input rows per band of a streamed schedule (a multiple of [`STREAM_BAND`] keeps Winograd
    /// tiles whole); 0 chooses them from the budget (see [`MAX_BAND_PIXELS`]). Tests and
    /// measurements.
    pub stream_band: usize,
}

/// How an image larger than the budget is cut beyond whole-network tiles: two-stage tiles of
/// networks with an upscaling tail (most x4 models), or the network streamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Staging {
    /// Two stages where they compute at most 5% more than whole-network tiles under the same
    /// budget (in practice several times less, or as much in less memory); then streaming where
    /// it computes at least 5% less than that (and no tile size is set). Neither when the whole
    /// image fits the budget at once, under a self-ensemble, or with a set `tile_pad`.
    #[default]
    Auto,
    /// Whole-network tiles only.
    Off,
    /// Always where the network splits (and no `tile_pad` is set), with tail tiles of this edge
    /// (tests, measurements).
    TailTile(usize),
    /// Stream the network down vertical stripes wherever it can be streamed (see
    /// [`Schedule::Streamed`]), the stripes `tile` pixels wide (0: as wide as the budget allows;
    /// tests, measurements).
    Stream,
}

/// How an image is cut for the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Whole-network tiles of this owned edge (0: the whole image in one piece).
    Tiles(usize),
    /// Body and tail tiled apart.
    Staged(StagedTiles),
    /// The whole network streamed ([`crate::graph::stream`]) down vertical stripes of `stripe`
    /// owned pixels (0: the whole width) in bands of `band` input rows: every row of every layer
    /// computed once, in memory that does not grow with the image's height.
    Streamed { stripe: usize, band: usize },
}

/// Input rows per streamed band, and the unit of taller bands: a multiple of both Winograd tile
/// sizes (4 and 6), so that the convolutions at the input's resolution end on whole tiles.
/// Measured on EDSR-baseline's body 960 pixels wide, two threads (in-process, alternated,
/// minimum of 3): 12 rows ran as fast per pixel as whole 320x180 images (6.44 against 6.51 us),
/// 24 rows no faster (6.51), 6 rows 20% slower (7.85); 12 rows' windows took 82 MiB there.
pub const STREAM_BAND: usize = 12;

/// Most input pixels per streamed band that [`Upscaler::schedule`] grows bands to where the
/// budget has room once the stripe is chosen. Short bands pay a fixed cost per layer call
/// (a parallel loop's start and its last, partly idle, job): realesr-animevideov3 streamed
/// down 640x360 on two threads (alternated, medians of 3, twice) took 0.92 / 0.95 s in 12-row
/// bands, 0.86 / 0.89 in 24 (78 MiB, the tallest under the default budget), and with the budget
/// raised 0.83 / 0.86 in 48 and 0.79 / 0.84 in 96 rows (whole image: 0.77 s); one thread, no
/// difference. The bands depend on the image and the budget only, never on the thread count,
/// so that the output (whose Winograd rounding follows the bands) does not either.
pub const MAX_BAND_PIXELS: usize = 96 * 640;

impl Default for UpscaleOptions {
    fn default() -> Self {
        UpscaleOptions {
            tile: 0,
            tile_pad: None,
            max_working_bytes: DEFAULT_MAX_WORKING_BYTES,
            grow_budget: true,
            max_grown_bytes: MAX_GROWN_BYTES,
            alpha: AlphaMode::Bicubic,
            depth: None,
            tta: Ensemble::none(),
            staging: Staging::Auto,
            stream_band: 0,
        }
    }
}

/// An upscaled image (interleaved samples, row-major).
#[derive(Clone, Debug)]
pub struct OutputImage {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub samples: Samples,
}

impl OutputImage {
    pub fn view(&self) -> ImageView<'_> {
        ImageView {
            width: self.width,
            height: self.height,
            channels: self.channels,
            samples: self.samples.as_ref(),
        }
    }
}

/// Which image channels feed the network's three inputs, and where its output goes.
#[derive(Clone, Copy)]
pub(super) enum Route {
    /// RGB(A): channels 0..3 in, 0..3 out.
    Color,
    /// Gray(A): channel 0 replicated in, luma of the output to channel 0.
    Gray,
    /// The alpha channel replicated in, luma of the output to the alpha channel.
    Alpha,
}

impl Route {
    /// The image channels (of `c`) that feed the network's three inputs.
    pub(super) fn sources(self, c: usize) -> [usize; 3] {
        match self {
            Route::Color => [0, 1, 2],
            Route::Gray => [0, 0, 0],
            Route::Alpha => [c - 1; 3],
        }
    }
}

/// A network plus the reusable state for running it over images.
pub struct Upscaler {
    net: Network,
    opts: UpscaleOptions,
    arena: Arena,
    plans: HashMap<(usize, usize), Plan>,
    staged: Option<Staged>,
    /// By image height, stripe width (context included) and band height.
    stream_plans: HashMap<(usize, usize, usize), StreamPlan>,
    stream_arena: StreamArena,
    /// The last image size [`Upscaler::budget`] was asked for, and its answer.
    budget_of: std::sync::Mutex<Option<((usize, usize), usize)>>,
}

impl Upscaler {
    pub fn new(net: Network, opts: UpscaleOptions) -> Self {
        let staged = if opts.staging == Staging::Off { None } else { Staged::new(&net) };
        Upscaler {
            net,
            opts,
            arena: Arena::new(),
            plans: HashMap::new(),
            staged,
            stream_plans: HashMap::new(),
            stream_arena: StreamArena::new(),
            budget_of: std::sync::Mutex::new(None),
        }
    }

    /// The memory budget an `h x w` image is scheduled under: `max_working_bytes`, or with
    /// [`UpscaleOptions::grow_budget`], where the schedule under it would cost more than
    /// [`MAX_RECOMPUTE`] times the untiled work, the smallest power of two up to
    /// [`UpscaleOptions::max_grown_bytes`] whose schedule does not (`max_working_bytes` where none does).
    pub fn budget(&self, h: usize, w: usize) -> usize {
        let base = self.opts.max_working_bytes;
        if !self.opts.grow_budget || self.opts.tile > 0 {
            return base;
        }
        let mut last = self.budget_of.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, b)) = *last {
            if key == (h, w) {
                return b;
            }
        }
        let whole = self.schedule_macs(h, w, Schedule::Tiles(0)) as f64;
        let within = |b: usize| self.macs_under(h, w, b) as f64 <= MAX_RECOMPUTE * whole;
        let mut grown = base;
        if !within(base) {
            let mut b = base.saturating_add(1).next_power_of_two();
            while b <= self.opts.max_grown_bytes {
                if within(b) {
                    grown = b;
                    break;
                }
                b *= 2;
            }
        }
        *last = Some(((h, w), grown));
        grown
    }

    /// How an `h x w` image is cut: whole-network tiles, the body and the tail tiled apart, or
    /// the network streamed down stripes (see [`Staging`]), whichever recomputes less context
    /// under the memory budget.
    pub fn schedule(&self, h: usize, w: usize) -> Schedule {
        self.schedule_under(h, w, self.budget(h, w))
    }

    /// [`Upscaler::schedule`] under a memory budget of `budget` bytes.
    pub fn schedule_under(&self, h: usize, w: usize, budget: usize) -> Schedule {
        if self.opts.staging == Staging::Stream {
            if let Some(streamed) = self.streamed_under(h, w, budget) {
                return streamed;
            }
        }
        let tiled = self.tiled_under(h, w, budget);
        if self.opts.staging != Staging::Auto || self.opts.tile > 0 || tiled == Schedule::Tiles(0) {
            return tiled;
        }
        // A streamed network recomputes only its stripes' side context; it pays a little where
        // each layer starts and ends its bands, so it is taken where it saves at least 5%.
        match self.streamed_under(h, w, budget) {
            Some(streamed) => {
                let cost = self.schedule_macs(h, w, tiled);
                if self.schedule_macs(h, w, streamed) <= cost - cost / 20 {
                    streamed
                } else {
                    tiled
                }
            }
            None => tiled,
        }
    }

    /// The best tiled schedule (single- or two-stage) under `budget` bytes.
    fn tiled_under(&self, h: usize, w: usize, budget: usize) -> Schedule {
        let single = self.tile_size_under(h, w, budget);
        // A set tile pad asks for that context (approximate seams), which is what single-stage
        // tiles give.
        let Some(st) =
            self.staged.as_ref().filter(|_| self.opts.tta.is_plain() && self.opts.tile_pad.is_none())
        else {
            return Schedule::Tiles(single);
        };
        match self.opts.staging {
            Staging::Off | Staging::Stream => Schedule::Tiles(single),
            Staging::TailTile(n) => Schedule::Staged(st.tiles_for(h, w, budget, self.opts.tile, n.max(1))),
            Staging::Auto if single == 0 => Schedule::Tiles(0),
            Staging::Auto => {
                let staged = st.tiles_for(h, w, budget, self.opts.tile, 0);
                let whole = self.tiles_macs(&self.tiles_with(h, w, single));
                // Within 5% of the compute, the staged run still wins on memory: its tiles
                // keep to the budget where whole-network tiles that span the image cannot.
                if st.macs(h, w, staged) <= whole + whole / 20 {
                    Schedule::Staged(staged)
                } else {
                    Schedule::Tiles(single)
                }
            }
        }
    }

    /// The network's stream plan for an image `h` rows tall and one pixel wide (its windows' rows
    /// do not depend on the width) in bands of `band` rows, where it can be streamed: a local
    /// network without pre-padding or alignment, every layer streamable, no self-ensemble or set
    /// tile pad.
    fn stream_windows(&self, h: usize, band: usize) -> Option<StreamPlan> {
        let n = &self.net;
        let plain = n.margin() == 0 && n.align() == 1 && n.is_local();
        if !plain || !self.opts.tta.is_plain() || self.opts.tile_pad.is_some() {
            return None;
        }
        StreamPlan::new(n.graph(), h, 1, band)
    }

    /// Vertical stripes of `stripe` owned pixels (0: the whole width) with the receptive field's
    /// context on each side.
    fn stripes(&self, w: usize, stripe: usize) -> Vec<Tile> {
        tiles_aligned(1, w, stripe, self.tile_pad(), 1)
    }

    /// Bytes of the widest stripe's windows.
    fn stream_bytes(&self, windows: &StreamPlan, w: usize, stripe: usize) -> usize {
        let pw = self.stripes(w, stripe).iter().map(|t| t.padded_w()).max().unwrap_or(w);
        windows.bytes_for_width(pw)
    }

    /// The streamed schedule under `budget` bytes: the fewest stripes (of one width, a multiple
    /// of 16 pixels, or the whole width) whose windows fit in bands of [`STREAM_BAND`] rows (or
    /// the set tile size and band), then the tallest bands, up to [`MAX_BAND_PIXELS`], that
    /// still fit with those stripes. `None` where the network cannot be streamed or not even
    /// 16-pixel stripes fit.
    fn streamed_under(&self, h: usize, w: usize, budget: usize) -> Option<Schedule> {
        let set_band = self.opts.stream_band;
        let unit = if set_band > 0 { set_band } else { STREAM_BAND };
        let windows = self.stream_windows(h, unit)?;
        let fits = |s: usize| self.stream_bytes(&windows, w, s) <= budget;
        let stripe = if self.opts.tile > 0 {
            self.opts.tile
        } else if fits(0) {
            0
        } else if fits(16) {
            // As many stripes as the widest that fit need, but of one width: the same context
            // recomputed in less memory (1920x1080 with realesr-animevideov3: two stripes of 960
            // in 68 MiB instead of 1360 + 560 in 96; as fast within the noise, 7.1-9.4 s against
            // 7.3-8.9 on two threads), and no narrow last stripe of small layer calls.
            let widest = largest_tile(w, 16, fits);
            w.div_ceil(w.div_ceil(widest)).next_multiple_of(16).min(widest)
        } else {
            return None;
        };
        if set_band > 0 {
            return Some(Schedule::Streamed { stripe, band: set_band });
        }
        let pw = self.stripes(w, stripe).iter().map(|t| t.padded_w()).max().unwrap_or(w);
        // No taller than the image (rounded up to whole bands): a band past it only costs memory.
        let most = (MAX_BAND_PIXELS / pw).min(h).max(1).div_ceil(STREAM_BAND).max(1);
        let band = (2..=most)
            .rev()
            .map(|k| k * STREAM_BAND)
            .find(|&b| self.stream_windows(h, b).is_some_and(|p| p.bytes_for_width(pw) <= budget))
            .unwrap_or(STREAM_BAND);
        Some(Schedule::Streamed { stripe, band })
    }

    /// Multiply-accumulates of a schedule, context recomputation included.
    fn schedule_macs(&self, h: usize, w: usize, sched: Schedule) -> u64 {
        match (sched, &self.staged) {
            (Schedule::Staged(st), Some(s)) => s.macs(h, w, st),
            (Schedule::Staged(_), None) => unreachable!("a staged schedule needs a split network"),
            (Schedule::Tiles(t), _) => self.tiles_macs(&self.tiles_with(h, w, t)),
            (Schedule::Streamed { stripe, .. }, _) => {
                self.stripes(w, stripe).iter().map(|t| self.net.graph().macs(h, t.padded_w())).sum()
            }
        }
    }

    /// Multiply-accumulates an `h x w` image costs with its [`Schedule`], the context that tiles
    /// recompute included.
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        self.macs_under(h, w, self.budget(h, w))
    }

    /// [`Upscaler::macs`] under a memory budget of `budget` bytes.
    pub fn macs_under(&self, h: usize, w: usize, budget: usize) -> u64 {
        self.schedule_macs(h, w, self.schedule_under(h, w, budget))
    }

    fn tiles_macs(&self, tiles: &[Tile]) -> u64 {
        tiles
            .iter()
            .map(|t| {
                let (ih, iw) = self.input_dims(t.padded_h(), t.padded_w());
                self.net.graph().macs(ih, iw)
            })
            .sum()
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    pub fn options(&self) -> &UpscaleOptions {
        &self.opts
    }

    /// Output bits per sample (`None`: the input's).
    pub fn set_depth(&mut self, depth: Option<u8>) {
        self.opts.depth = depth;
    }

    /// Context around tiles beyond the network's own pre-padding: the receptive field less the
    /// pre-padding unless set, in multiples of the network's alignment.
    pub fn tile_pad(&self) -> usize {
        self.opts.tile_pad.unwrap_or_else(|| self.net.tile_context()).next_multiple_of(self.net.align())
    }

    fn tiles(&self, h: usize, w: usize) -> Vec<Tile> {
        self.tiles_with(h, w, self.tile_size(h, w))
    }

    fn tiles_with(&self, h: usize, w: usize, tile: usize) -> Vec<Tile> {
        tiles_aligned(h, w, tile, self.tile_pad(), self.net.align())
    }

    /// How many tiles an `h x w` image is cut into (before self-ensemble; body tiles of a staged
    /// schedule).
    pub fn tiles_for(&self, h: usize, w: usize) -> usize {
        match (self.schedule(h, w), &self.staged) {
            (Schedule::Staged(st), Some(s)) => s.count(h, w, st),
            (Schedule::Streamed { stripe, .. }, _) => self.stripes(w, stripe).len(),
            _ => self.tiles(h, w).len(),
        }
    }

    /// The network input for a padded tile: grown by the pre-padding on each side.
    fn input_dims(&self, ph: usize, pw: usize) -> (usize, usize) {
        let m = self.net.margin();
        (ph + 2 * m, pw + 2 * m)
    }

    /// The owned tile edge used for an `h x w` image (0 = the whole image in one piece).
    pub fn tile_size(&self, h: usize, w: usize) -> usize {
        self.tile_size_under(h, w, self.budget(h, w))
    }

    fn tile_size_under(&self, h: usize, w: usize, budget: usize) -> usize {
        if self.opts.tile > 0 {
            return self.opts.tile;
        }
        let bytes = |th: usize, tw: usize| self.tile_bytes(th, tw);
        if bytes(h, w) <= budget {
            return 0;
        }
        let pad = self.tile_pad();
        largest_tile(h.max(w), 16, |t| bytes((t + 2 * pad).min(h), (t + 2 * pad).min(w)) <= budget)
    }

    /// Working bytes of one `th x tw` region of the image: the activations, plus the f32 sums of a
    /// self-ensemble (bounded by the tile, never the whole image).
    fn tile_bytes(&self, th: usize, tw: usize) -> usize {
        let (ih, iw) = self.net.input_size(th, tw);
        let Ok(plan) = self.net.plan(ih, iw) else { return usize::MAX };
        let s = self.net.scale();
        let sums = if self.opts.tta.is_plain() { 0 } else { th * s * tw * s * 3 * 4 };
        plan.arena_bytes().saturating_add(sums)
    }

    /// Peak working bytes (activations, and self-ensemble sums) for an `h x w` image with the
    /// chosen tiling.
    pub fn working_bytes(&self, h: usize, w: usize) -> usize {
        match (self.schedule(h, w), &self.staged) {
            (Schedule::Staged(st), Some(s)) => return s.working_bytes(h, w, st),
            (Schedule::Streamed { stripe, band }, _) => {
                return self.stream_windows(h, band).map_or(0, |p| self.stream_bytes(&p, w, stripe))
            }
            _ => {}
        }
        self.tiles(h, w)
            .iter()
            .map(|t| self.tile_bytes(t.padded_h(), t.padded_w()))
            .filter(|&b| b != usize::MAX)
            .max()
            .unwrap_or(0)
    }

    /// Upscale an image (gray, gray+alpha, RGB or RGBA; 8 or 16 bits).
    pub fn upscale(&mut self, img: &ImageView) -> Result<OutputImage> {
        self.upscale_with_progress(img, &mut |_, _| {})
    }

    /// As [`Upscaler::upscale`], calling `progress(done, total)` after each tile.
    pub fn upscale_with_progress(
        &mut self,
        img: &ImageView,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<OutputImage> {
        let (w, h, c) = (img.width as usize, img.height as usize, img.channels as usize);
        if !(1..=4).contains(&c) {
            return Err(Error::Usage(format!("{c}-channel images are not supported")));
        }
        let expected = w.checked_mul(h).and_then(|p| p.checked_mul(c));
        let len = match img.samples {
            SamplesRef::U8(s) => s.len(),
            SamplesRef::U16(s) => s.len(),
        };
        if expected != Some(len) || w == 0 || h == 0 {
            return Err(Error::Usage(format!("{len} samples for a {w}x{h}x{c} image")));
        }
        let s = self.net.scale();
        let (ow, oh) = (w.checked_mul(s), h.checked_mul(s));
        let (Some(ow), Some(oh)) = (ow, oh) else {
            return Err(Error::Usage("output size overflows".into()));
        };
        if ow > u32::MAX as usize || oh > u32::MAX as usize {
            return Err(Error::Usage(format!("output of {ow}x{oh} pixels is too large")));
        }
        let depth = self.opts.depth.unwrap_or(match img.samples {
            SamplesRef::U8(_) => 8,
            SamplesRef::U16(_) => 16,
        });
        let n = ow * oh * c;
        let mut samples = match depth {
            8 => Samples::U8(vec![0; n]),
            16 => Samples::U16(vec![0; n]),
            d => return Err(Error::Usage(format!("output depth must be 8 or 16, not {d}"))),
        };
        let has_alpha = c == 2 || c == 4;
        let color = if c >= 3 { Route::Color } else { Route::Gray };
        let mut passes = vec![color];
        if has_alpha && self.opts.alpha == AlphaMode::Model {
            passes.push(Route::Alpha);
        }
        let schedule = self.schedule(h, w);
        if let Schedule::Streamed { stripe, band } = schedule {
            let total = self.stripes(w, stripe).len() * passes.len();
            let mut done = 0;
            for route in passes {
                self.run_streamed(img, route, &mut samples, (stripe, band), &mut || {
                    done += 1;
                    progress(done, total);
                })?;
            }
        } else if let (Schedule::Staged(st), Some(staged)) = (schedule, self.staged.as_mut()) {
            let total = staged.count(h, w, st) * passes.len();
            let mut done = 0;
            for route in passes {
                staged.run(&mut self.arena, img, route, &mut samples, st, &mut || {
                    done += 1;
                    progress(done, total);
                })?;
            }
        } else {
            let tl = self.tiles(h, w);
            let total = tl.len() * passes.len();
            let mut done = 0;
            for route in passes {
                for t in &tl {
                    cancel::check()?;
                    if self.opts.tta.is_plain() {
                        self.run_tile(img, t, route, &mut samples, c)?;
                    } else {
                        self.run_tile_ensemble(img, t, route, &mut samples, c)?;
                    }
                    done += 1;
                    progress(done, total);
                }
            }
        }
        if has_alpha && self.opts.alpha == AlphaMode::Bicubic {
            resize::bicubic_channel(img.samples, w, h, c, c - 1, s, &mut samples);
        }
        Ok(OutputImage { width: ow as u32, height: oh as u32, channels: c as u8, samples })
    }

    /// Stream one route of an image down stripes `stripe` pixels wide, calling `progress()`
    /// after each stripe.
    fn run_streamed(
        &mut self,
        img: &ImageView,
        route: Route,
        out: &mut Samples,
        (stripe, band): (usize, usize),
        progress: &mut dyn FnMut(),
    ) -> Result<()> {
        let (h, w, c) = (img.height as usize, img.width as usize, img.channels as usize);
        let s = self.net.scale();
        let src_ch = route.sources(c);
        let in_aff = self.net.input_affine().to_vec();
        let out_aff = self.net.output_affine().to_vec();
        let edge = Edge { mode: self.net.edge_mode(), margin: 0, h, w };
        for t in self.stripes(w, stripe) {
            cancel::check()?;
            let key = (h, t.padded_w(), band);
            if !self.stream_plans.contains_key(&key) {
                let plan = StreamPlan::new(self.net.graph(), h, key.1, band)
                    .ok_or_else(|| Error::Model("this network cannot be streamed".into()))?;
                self.stream_plans.insert(key, plan);
            }
            let mut fill = |y0: usize, buf: &mut [f32], l: &Layout| {
                let rows = Tile { py0: y0, py1: y0 + l.h, ..t };
                fill_tile(buf, l, img, &edge, &rows, Dihedral::IDENTITY, src_ch, &in_aff);
                Ok(())
            };
            let (ow, cols, col0) = (w * s, (t.x0 * s, t.x1 * s), t.px0 * s);
            let mut emit = |y0: usize, buf: &[f32], l: &Layout| {
                cancel::check()?;
                let rows = (y0, y0 + l.h);
                match &mut *out {
                    Samples::U8(o) => {
                        read_region(buf, l, o, ow, c, rows, y0, cols, col0, route, &out_aff, 255.0)
                    }
                    Samples::U16(o) => {
                        read_region(buf, l, o, ow, c, rows, y0, cols, col0, route, &out_aff, 65535.0)
                    }
                }
                Ok(())
            };
            self.net.graph().stream(
                &self.stream_plans[&key],
                &mut self.stream_arena,
                &mut fill,
                &mut emit,
            )?;
            progress();
        }
        Ok(())
    }

    fn run_tile(
        &mut self,
        img: &ImageView,
        t: &Tile,
        route: Route,
        out: &mut Samples,
        c: usize,
    ) -> Result<()> {
        let key = self.input_dims(t.padded_h(), t.padded_w());
        self.ensure_plan(key)?;
        let plan = &self.plans[&key];
        let w = img.width as usize;
        let s = self.net.scale();
        let src_ch = route.sources(c);
        let in_aff = self.net.input_affine().to_vec();
        let out_aff = self.net.output_affine().to_vec();
        let edge = self.edge(img);
        let fill = |buf: &mut [f32], l: &Layout| {
            fill_tile(buf, l, img, &edge, t, Dihedral::IDENTITY, src_ch, &in_aff)
        };
        let ow = w * s;
        let read = |buf: &[f32], l: &Layout| match out {
            Samples::U8(o) => read_tile(buf, l, o, ow, c, t, s, route, &out_aff, 255.0),
            Samples::U16(o) => read_tile(buf, l, o, ow, c, t, s, route, &out_aff, 65535.0),
        };
        self.net.run_with(plan, &mut self.arena, fill, read);
        Ok(())
    }

    fn edge(&self, img: &ImageView) -> Edge {
        Edge {
            mode: self.net.edge_mode(),
            margin: self.net.margin(),
            h: img.height as usize,
            w: img.width as usize,
        }
    }

    fn ensure_plan(&mut self, key: (usize, usize)) -> Result<()> {
        if !self.plans.contains_key(&key) {
            let plan = self.net.plan(key.0, key.1)?;
            self.plans.insert(key, plan);
        }
        Ok(())
    }

    /// A tile under a self-ensemble: the padded tile is transformed, run, and the owned part of
    /// the output read back through the inverse transform into f32 sums (transform order fixed),
    /// which are averaged and quantised once. The padded tile has the same context on every side
    /// in every orientation, so tiled output still equals untiled output.
    fn run_tile_ensemble(
        &mut self,
        img: &ImageView,
        t: &Tile,
        route: Route,
        out: &mut Samples,
        c: usize,
    ) -> Result<()> {
        let w = img.width as usize;
        let s = self.net.scale();
        let (ph, pw) = (t.padded_h(), t.padded_w());
        let (oh, ow) = ((t.y1 - t.y0) * s, (t.x1 - t.x0) * s);
        // Offset of the owned output inside the padded tile's output.
        let (ry0, rx0) = ((t.y0 - t.py0) * s, (t.x0 - t.px0) * s);
        let src_ch = route.sources(c);
        let in_aff = self.net.input_affine().to_vec();
        let out_aff = self.net.output_affine().to_vec();
        let mut sums = vec![0f32; oh * ow * 3];
        let transforms = self.opts.tta.transforms().to_vec();
        let edge = self.edge(img);
        let (ih, iw) = self.input_dims(ph, pw);
        for &d in &transforms {
            let key = d.dims(ih, iw);
            self.ensure_plan(key)?;
            let plan = &self.plans[&key];
            let fill = |buf: &mut [f32], l: &Layout| fill_tile(buf, l, img, &edge, t, d, src_ch, &in_aff);
            let add = |buf: &[f32], l: &Layout| {
                sums.par_chunks_mut(ow * 3).enumerate().for_each(|(i, row)| {
                    for j in 0..ow {
                        let (ty, tx) = d.target(ry0 + i, rx0 + j, ph * s, pw * s);
                        let o = l.offset(ty as isize, tx as isize) as usize;
                        for k in 0..3 {
                            row[j * 3 + k] += out_aff[k].0 * buf[o + k] + out_aff[k].1;
                        }
                    }
                });
            };
            self.net.run_with(plan, &mut self.arena, fill, add);
        }
        let inv = 1.0 / transforms.len() as f32;
        let ow_img = w * s;
        let (oy0, ox0) = (t.y0 * s, t.x0 * s);
        match out {
            Samples::U8(o) => store_sums(o, &sums, ow_img, c, oy0, ox0, oh, ow, inv, route, 255.0),
            Samples::U16(o) => store_sums(o, &sums, ow_img, c, oy0, ox0, oh, ow, inv, route, 65535.0),
        }
        Ok(())
    }
}

/// Average ensemble sums and quantise them into the owned output rectangle.
#[allow(clippy::too_many_arguments)]
fn store_sums<T: Sample>(
    out: &mut [T],
    sums: &[f32],
    ow_img: usize,
    c: usize,
    oy0: usize,
    ox0: usize,
    oh: usize,
    ow: usize,
    inv: f32,
    route: Route,
    max: f32,
) {
    let rows = out[oy0 * ow_img * c..(oy0 + oh) * ow_img * c].par_chunks_mut(ow_img * c);
    rows.enumerate().for_each(|(i, row)| {
        for j in 0..ow {
            let v = &sums[(i * ow + j) * 3..][..3];
            let rgb = [0, 1, 2].map(|k| v[k] * inv);
            store(&mut row[(ox0 + j) * c..(ox0 + j + 1) * c], c, route, rgb, max);
        }
    });
}

/// A sample type the pipeline reads and writes.
pub(crate) trait Sample: Copy + Send + Sync {
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}

impl Sample for u8 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn from_f32(v: f32) -> Self {
        v as u8
    }
}

impl Sample for u16 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn from_f32(v: f32) -> Self {
        v as u16
    }
}

/// Quantise a [0,1] value (clamped) to `max` levels, rounding half to even like numpy's `round`,
/// which the reference implementations use.
#[inline]
pub(crate) fn quantize(v: f32, max: f32) -> f32 {
    // For 0 <= x < 2^23, x + 2^23 keeps no fraction bits: the addition rounds to nearest even
    // (the default mode) and the subtraction is exact, so this is `round_ties_even` (with -0 as
    // +0, the same sample; NaN stays NaN), which on the x86-64 baseline (no SSE4.1) is a libm call per sample: 1.3%
    // of a Set14 batch's samples with the default model, plus the call overhead around it.
    const SHIFT: f32 = 8_388_608.0;
    debug_assert!(max < SHIFT);
    (v.clamp(0.0, 1.0) * max + SHIFT) - SHIFT
}

/// Where a tile's network input comes from: its run rectangle grown by the network's pre-padding,
/// with coordinates outside the image mapped back in by the edge mode.
pub(super) struct Edge {
    pub mode: crate::models::EdgeMode,
    pub margin: usize,
    pub h: usize,
    pub w: usize,
}

/// Fill the network input with the padded tile grown by the pre-padding, transformed by `d` (the
/// buffer's layout has the transformed size).
#[allow(clippy::too_many_arguments)]
pub(super) fn fill_tile(
    buf: &mut [f32],
    l: &Layout,
    img: &ImageView,
    e: &Edge,
    t: &Tile,
    d: Dihedral,
    src_ch: [usize; 3],
    aff: &[(f32, f32)],
) {
    let c = img.channels as usize;
    match img.samples {
        SamplesRef::U8(px) => fill_samples(buf, l, px, e, c, t, d, src_ch, aff, 1.0 / 255.0),
        SamplesRef::U16(px) => fill_samples(buf, l, px, e, c, t, d, src_ch, aff, 1.0 / 65535.0),
    }
}

#[allow(clippy::too_many_arguments)]
fn fill_samples<T: Sample>(
    buf: &mut [f32],
    l: &Layout,
    px: &[T],
    e: &Edge,
    c: usize,
    t: &Tile,
    d: Dihedral,
    src_ch: [usize; 3],
    aff: &[(f32, f32)],
    inv_max: f32,
) {
    let m = e.margin;
    let (rh, rw) = (t.padded_h() + 2 * m, t.padded_w() + 2 * m);
    let cols: Vec<usize> =
        (0..rw).map(|j| e.mode.index(t.px0 as isize - m as isize + j as isize, e.w)).collect();
    let rows: Vec<usize> =
        (0..rh).map(|i| e.mode.index(t.py0 as isize - m as isize + i as isize, e.h)).collect();
    for ty in 0..l.h {
        for tx in 0..l.w {
            let o = l.offset(ty as isize, tx as isize) as usize;
            let (si, sj) = d.source(ty, tx, rh, rw);
            let (y, x) = (rows[si], cols[sj]);
            let p = &px[(y * e.w + x) * c..];
            for k in 0..3 {
                let (a, b) = aff[k];
                buf[o + k] = a * (p[src_ch[k]].to_f32() * inv_max) + b;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn read_tile<T: Sample>(
    buf: &[f32],
    l: &Layout,
    out: &mut [T],
    ow: usize,
    c: usize,
    t: &Tile,
    s: usize,
    route: Route,
    aff: &[(f32, f32)],
    max: f32,
) {
    let (rows, cols) = ((t.y0 * s, t.y1 * s), (t.x0 * s, t.x1 * s));
    read_region(buf, l, out, ow, c, rows, t.py0 * s, cols, t.px0 * s, route, aff, max);
}

/// Quantise output rows `rows` and columns `cols` from a buffer whose row 0 and column 0 are
/// output row `row0` and column `col0`, into an image `ow` pixels wide.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_region<T: Sample>(
    buf: &[f32],
    l: &Layout,
    out: &mut [T],
    ow: usize,
    c: usize,
    rows: (usize, usize),
    row0: usize,
    cols: (usize, usize),
    col0: usize,
    route: Route,
    aff: &[(f32, f32)],
    max: f32,
) {
    let lines = out[rows.0 * ow * c..rows.1 * ow * c].par_chunks_mut(ow * c);
    lines.enumerate().for_each(|(i, line)| {
        let ty = (rows.0 + i - row0) as isize;
        for ox in cols.0..cols.1 {
            let o = l.offset(ty, (ox - col0) as isize) as usize;
            let rgb = [0, 1, 2].map(|k| aff[k].0 * buf[o + k] + aff[k].1);
            store(&mut line[ox * c..(ox + 1) * c], c, route, rgb, max);
        }
    });
}

/// Quantise one output pixel (RGB in [0,1] terms) into its samples according to the route.
#[inline]
fn store<T: Sample>(dst: &mut [T], c: usize, route: Route, rgb: [f32; 3], max: f32) {
    match route {
        Route::Color => {
            for k in 0..3 {
                dst[k] = T::from_f32(quantize(rgb[k], max));
            }
        }
        Route::Gray => dst[0] = T::from_f32(quantize(luma(rgb), max)),
        Route::Alpha => dst[c - 1] = T::from_f32(quantize(luma(rgb), max)),
    }
}

/// BT.601 luma of clamped RGB, as OpenCV's RGB-to-gray that reference tools use for gray output.
fn luma(rgb: [f32; 3]) -> f32 {
    let [r, g, b] = rgb.map(|v| v.clamp(0.0, 1.0));
    0.299 * r + 0.587 * g + 0.114 * b
}

#[cfg(test)]
mod tests {
    use super::quantize;

    /// The rounding trick against `round_ties_even` (equal values; -0 comes out +0): every integer and half-integer
    /// level of 8- and 16-bit output (the ties), values just off them, out-of-range inputs, NaN.
    #[test]
    fn quantize_rounds_half_to_even() {
        for max in [255.0f32, 65535.0, 1.0, 1023.0] {
            let want = |v: f32| (v.clamp(0.0, 1.0) * max).round_ties_even();
            let mut vals = vec![-1.0, -0.0, 0.0, 1.0, 2.0, f32::INFINITY, f32::NEG_INFINITY, 1e-30];
            for k in 0..=(2.0 * max) as u32 {
                let v = k as f32 * 0.5 / max;
                vals.extend([v, f32::from_bits(v.to_bits() + 1), f32::from_bits(v.to_bits().max(1) - 1)]);
            }
            for v in vals {
                assert_eq!(quantize(v, max), want(v), "{v} at max {max}");
            }
            assert!(quantize(f32::NAN, max).is_nan());
        }
    }
}
