//! Several networks run one after another (`-m denoise -m upscale`), and an output scale other
//! than the networks' own (`--outscale`): the networks' result is resampled with Lanczos-3 to
//! `floor(outscale·size)`, as Real-ESRGAN's `--outscale` does. Between stages, and before the
//! resampling, images are kept at 16 bits per sample so chaining adds no visible quantisation.

use super::upscale::{OutputImage, Upscaler};
use crate::error::{Error, Result};
use crate::io::image::{ImageView, SamplesRef};
use crate::kernels::resize;

pub struct Chain {
    stages: Vec<Upscaler>,
    outscale: Option<f64>,
    depth: Option<u8>,
}

impl Chain {
    /// `depth` is the output bits per sample (`None`: the input's); `outscale` must be positive.
    pub fn new(stages: Vec<Upscaler>, outscale: Option<f64>, depth: Option<u8>) -> Result<Chain> {
        if stages.is_empty() {
            return Err(Error::Usage("no model to run".into()));
        }
        if let Some(s) = outscale {
            if !(s.is_finite() && s > 0.0 && s <= 64.0) {
                return Err(Error::Usage(format!("--outscale {s}: expected a number in (0, 64]")));
            }
        }
        Ok(Chain { stages, outscale, depth })
    }

    /// Output bits per sample asked for (`None`: the input's).
    pub fn depth(&self) -> Option<u8> {
        self.depth
    }

    pub fn stages(&self) -> &[Upscaler] {
        &self.stages
    }

    /// Product of the networks' scales.
    pub fn native_scale(&self) -> usize {
        self.stages.iter().map(|s| s.network().scale()).product()
    }

    /// Output size for a `w x h` input.
    pub fn output_size(&self, w: u32, h: u32) -> (u32, u32) {
        match self.outscale {
            Some(s) => {
                let f = |n: u32| ((n as f64 * s).floor() as u64).clamp(1, u32::MAX as u64) as u32;
                (f(w), f(h))
            }
            None => {
                let s = self.native_scale() as u64;
                let f = |n: u32| (n as u64 * s).min(u32::MAX as u64) as u32;
                (f(w), f(h))
            }
        }
    }

    /// How many times the multiply-accumulates of an untiled run a `w x h` image costs with the
    /// stages' tiling (the context tiles recompute), over all stages.
    pub fn recompute_factor(&self, w: u32, h: u32) -> f64 {
        self.recompute_factor_under(w, h, None)
    }

    /// [`Chain::recompute_factor`] with every stage under a memory budget of `budget` bytes
    /// (`None`: the stages' own, grown where [`Upscaler::budget`] grows them).
    pub fn recompute_factor_under(&self, w: u32, h: u32, budget: Option<usize>) -> f64 {
        let (mut tiled, mut whole) = (0u64, 0u64);
        let (mut w, mut h) = (w as usize, h as usize);
        for st in &self.stages {
            let b = budget.unwrap_or_else(|| st.budget(h, w));
            tiled = tiled.saturating_add(st.macs_under(h, w, b));
            whole = whole.saturating_add(st.network().graph().macs(h, w));
            let s = st.network().scale();
            (w, h) = (w * s, h * s);
        }
        if whole == 0 {
            1.0
        } else {
            tiled as f64 / whole as f64
        }
    }

    /// The largest budget a stage runs a `w x h` image under beyond its `max_working_bytes`
    /// (see [`Upscaler::budget`]), with that stage's `max_working_bytes`; `None` where no stage
    /// grows its budget.
    pub fn grown_budget(&self, w: u32, h: u32) -> Option<(usize, usize)> {
        let (mut w, mut h) = (w as usize, h as usize);
        let mut most = None;
        for st in &self.stages {
            let (b, base) = (st.budget(h, w), st.options().max_working_bytes);
            if b > base && most.is_none_or(|(m, _)| b > m) {
                most = Some((b, base));
            }
            let s = st.network().scale();
            (w, h) = (w * s, h * s);
        }
        most
    }

    /// Run every stage, then resample if asked; `progress(done, total)` counts tiles of all stages.
    pub fn upscale_with_progress(
        &mut self,
        img: &ImageView,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<OutputImage> {
        let final_depth = self.depth.unwrap_or(match img.samples {
            SamplesRef::U8(_) => 8,
            SamplesRef::U16(_) => 16,
        });
        let (ow, oh) = self.output_size(img.width, img.height);
        let native = self.native_scale() as u64;
        let resample = (ow as u64, oh as u64) != (img.width as u64 * native, img.height as u64 * native);
        let n = self.stages.len();
        let mut cur: Option<OutputImage> = None;
        for (i, stage) in self.stages.iter_mut().enumerate() {
            let last = i + 1 == n;
            stage.set_depth(Some(if last && !resample { final_depth } else { 16 }));
            let view = cur.as_ref().map(|o| o.view());
            let input = view.as_ref().unwrap_or(img);
            let out = stage.upscale_with_progress(input, &mut |d, t| progress(d + i * t, t * n))?;
            cur = Some(out);
        }
        let out = cur.expect("at least one stage");
        if !resample {
            return Ok(out);
        }
        let c = out.channels as usize;
        let samples = resize::lanczos_resample(
            out.samples.as_ref(),
            out.width as usize,
            out.height as usize,
            c,
            ow as usize,
            oh as usize,
            final_depth,
        );
        Ok(OutputImage { width: ow, height: oh, channels: out.channels, samples })
    }

    pub fn upscale(&mut self, img: &ImageView) -> Result<OutputImage> {
        self.upscale_with_progress(img, &mut |_, _| {})
    }
}
