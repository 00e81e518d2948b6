//! Streaming video super-resolution: frames go in one at a time and come out in order, through a
//! window of `2N+1` frames whose features are each computed once and cached only while some
//! pending window still needs them, so memory does not depend on the clip length.

use super::cancel;
use super::tta::Ensemble;
use super::upscale::Upscaler;
use crate::error::{Error, Result};
use crate::graph::Arena;
use crate::io::image::{ImageView, Samples, SamplesRef};
use crate::models::video::FrameFeatures;
use crate::models::{EdgePolicy, VideoNetwork};
use std::collections::BTreeMap;

/// An RGB frame: dense HWC, values on the [0,1] scale (output frames are unclamped).
#[derive(Clone, Debug, PartialEq)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

enum Engine {
    /// A window model (EDVR, TDAN); with a self-ensemble, each frame's features are cached once
    /// per transform.
    Temporal {
        net: VideoNetwork,
        arena: Arena,
        cache: BTreeMap<usize, Vec<FrameFeatures>>,
        policy: EdgePolicy,
        tta: Ensemble,
    },
    /// A single-image model applied frame by frame.
    Image { up: Box<Upscaler> },
}

/// Which output frames to produce (all by default); see [`VideoStream::select_outputs`].
type Wanted = Box<dyn Fn(usize) -> bool + Send>;

/// Push LR frames, receive HR frames in order.
pub struct VideoStream {
    engine: Engine,
    received: usize,
    next_out: usize,
    size: Option<(usize, usize)>,
    finished: bool,
    wanted: Option<Wanted>,
}

impl VideoStream {
    /// A stream over a window model with the given edge policy (the model's default if `None`).
    pub fn temporal(net: VideoNetwork, policy: Option<EdgePolicy>) -> Self {
        VideoStream::temporal_tta(net, policy, Ensemble::none())
    }

    /// As [`VideoStream::temporal`] with a self-ensemble: every frame of the window goes through
    /// the same flip/transpose, each output is transformed back, and the results are averaged in
    /// a fixed order (TDAN's evaluation uses the four flips, [`Ensemble::flips`]).
    pub fn temporal_tta(net: VideoNetwork, policy: Option<EdgePolicy>, tta: Ensemble) -> Self {
        let policy = policy.unwrap_or(net.default_edge());
        VideoStream::with(Engine::Temporal { net, arena: Arena::new(), cache: BTreeMap::new(), policy, tta })
    }

    /// A stream that runs a single-image upscaler on each frame.
    pub fn image(up: Upscaler) -> Self {
        VideoStream::with(Engine::Image { up: Box::new(up) })
    }

    fn with(engine: Engine) -> Self {
        VideoStream { engine, received: 0, next_out: 0, size: None, finished: false, wanted: None }
    }

    /// Produce only the output frames whose index `wanted` accepts (a shard's range, the frames
    /// a killed run did not write): the others are never computed, and an input frame's
    /// features only when a wanted window contains it. Every produced frame is bit-identical to
    /// the same frame of a run over the whole clip, since windows are chosen by the same rule.
    /// `wanted` must give the same answer for an index every time it is asked.
    pub fn select_outputs(&mut self, wanted: impl Fn(usize) -> bool + Send + 'static) {
        self.wanted = Some(Box::new(wanted));
    }

    fn is_wanted(&self, i: usize) -> bool {
        self.wanted.as_ref().is_none_or(|w| w(i))
    }

    /// Frames received so far (the index the next pushed frame gets).
    pub fn received(&self) -> usize {
        self.received
    }

    /// Whether input frame `j` is read by any wanted output: if not, [`VideoStream::push_skipped`]
    /// may stand in for it. A window reaches at most `2·half` frames from its centre, whatever the
    /// edge policy (reflections mirror within the window's span).
    pub fn needs_input(&self, j: usize) -> bool {
        let reach = match &self.engine {
            Engine::Temporal { net, .. } => 2 * (net.num_frames() / 2),
            Engine::Image { .. } => 0,
        };
        (j.saturating_sub(reach)..=j.saturating_add(reach)).any(|i| self.is_wanted(i))
    }

    pub fn scale(&self) -> usize {
        match &self.engine {
            Engine::Temporal { net, .. } => net.scale(),
            Engine::Image { up } => up.network().scale(),
        }
    }

    /// Frames in a window (1 for image models).
    pub fn window_len(&self) -> usize {
        match &self.engine {
            Engine::Temporal { net, .. } => net.num_frames(),
            Engine::Image { .. } => 1,
        }
    }

    /// Frame sides must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        match &self.engine {
            Engine::Temporal { net, .. } => net.size_multiple(),
            Engine::Image { .. } => 1,
        }
    }

    /// Bytes of cached frame features right now (bounded by the window, not the clip).
    pub fn cached_bytes(&self) -> usize {
        match &self.engine {
            Engine::Temporal { cache, .. } => cache.values().flatten().map(|f| f.bytes()).sum(),
            Engine::Image { .. } => 0,
        }
    }

    /// Add the next frame; returns the output frames that became ready, in order.
    pub fn push(&mut self, frame: &RgbFrame) -> Result<Vec<RgbFrame>> {
        Ok(self.push_indexed(frame)?.into_iter().map(|(_, f)| f).collect())
    }

    /// The clip ended: produce the remaining frames (their windows are completed by the edge
    /// policy now that the clip length is known).
    pub fn finish(&mut self) -> Result<Vec<RgbFrame>> {
        Ok(self.finish_indexed()?.into_iter().map(|(_, f)| f).collect())
    }

    /// Count an input frame that no wanted output reads ([`VideoStream::needs_input`] is false)
    /// without its pixels; returns the output frames that became ready.
    pub fn push_skipped(&mut self) -> Result<Vec<(usize, RgbFrame)>> {
        if self.finished {
            return Err(Error::Usage("frame pushed after the stream was finished".into()));
        }
        if self.needs_input(self.received) {
            return Err(Error::Usage(format!("frame {} is needed and cannot be skipped", self.received)));
        }
        self.received += 1;
        match &self.engine {
            Engine::Image { .. } => {
                self.next_out += 1;
                Ok(Vec::new())
            }
            Engine::Temporal { .. } => self.drain(None),
        }
    }

    /// As [`VideoStream::push`], each output frame with its index in the clip.
    pub fn push_indexed(&mut self, frame: &RgbFrame) -> Result<Vec<(usize, RgbFrame)>> {
        if self.finished {
            return Err(Error::Usage("frame pushed after the stream was finished".into()));
        }
        cancel::check()?;
        match self.size {
            None => self.size = Some((frame.width, frame.height)),
            Some(s) if s != (frame.width, frame.height) => {
                return Err(Error::Usage(format!(
                    "frame {} is {}x{}, but the stream's frames are {}x{}",
                    self.received, frame.width, frame.height, s.0, s.1
                )))
            }
            _ => {}
        }
        if frame.data.len() != frame.width * frame.height * 3 {
            return Err(Error::Usage(format!("frame {} has {} values", self.received, frame.data.len())));
        }
        let idx = self.received;
        let (wanted, needed) = (self.is_wanted(idx), self.needs_input(idx));
        match &mut self.engine {
            Engine::Image { up } => {
                self.received += 1;
                self.next_out += 1;
                if !wanted {
                    return Ok(Vec::new());
                }
                Ok(vec![(idx, upscale_frame(up, frame)?)])
            }
            Engine::Temporal { net, arena, cache, tta, .. } => {
                if needed {
                    let mut per = Vec::with_capacity(tta.len());
                    for d in tta.transforms() {
                        let (px, th, tw) = d.apply(&frame.data, frame.height, frame.width, 3);
                        per.push(net.features(&px, th, tw, arena)?);
                    }
                    cache.insert(idx, per);
                }
                self.received += 1;
                self.drain(None)
            }
        }
    }

    /// As [`VideoStream::finish`], each output frame with its index in the clip.
    pub fn finish_indexed(&mut self) -> Result<Vec<(usize, RgbFrame)>> {
        if self.finished {
            return Ok(Vec::new());
        }
        self.finished = true;
        let n = self.received;
        self.drain(Some(n))
    }

    fn drain(&mut self, n: Option<usize>) -> Result<Vec<(usize, RgbFrame)>> {
        let mut out = Vec::new();
        let wanted = &self.wanted;
        let Engine::Temporal { net, arena, cache, policy, tta } = &mut self.engine else { return Ok(out) };
        let half = net.num_frames() / 2;
        let (w, h) = self.size.unwrap_or((0, 0));
        while self.next_out < self.received {
            let i = self.next_out;
            if !wanted.as_ref().is_none_or(|f| f(i)) {
                self.next_out += 1;
                let keep_from = self.next_out.saturating_sub(2 * half);
                cache.retain(|&k, _| k >= keep_from);
                continue;
            }
            // Until the clip length is known, a window is final only if it does not reach past
            // the frames received so far.
            let idx = policy.window(i, half, n);
            if n.is_none() && (i + half >= self.received || idx.iter().any(|&j| j >= self.received)) {
                break;
            }
            cancel::check()?;
            let (ow, oh) = (w * net.scale(), h * net.scale());
            let mut sum: Option<Vec<f32>> = None;
            for (k, d) in tta.transforms().iter().enumerate() {
                let window: Vec<&FrameFeatures> = idx
                    .iter()
                    .map(|j| {
                        cache
                            .get(j)
                            .map(|v| &v[k])
                            .ok_or_else(|| Error::Usage(format!("frame {j} was evicted too early")))
                    })
                    .collect::<Result<_>>()?;
                let data = net.window(&window, arena)?;
                let (th, tw) = d.dims(oh, ow);
                let (back, _, _) = d.invert().apply(&data, th, tw, 3);
                match &mut sum {
                    None => sum = Some(back),
                    Some(acc) => acc.iter_mut().zip(&back).for_each(|(a, b)| *a += b),
                }
            }
            let mut data = sum.expect("an ensemble has at least the identity");
            if tta.len() > 1 {
                let inv = 1.0 / tta.len() as f32;
                data.iter_mut().for_each(|v| *v *= inv);
            }
            out.push((i, RgbFrame { width: ow, height: oh, data }));
            self.next_out += 1;
            // Later windows never reach further back than 2·half frames before their centre.
            let keep_from = self.next_out.saturating_sub(2 * half);
            cache.retain(|&k, _| k >= keep_from);
        }
        Ok(out)
    }
}

/// A single-image model on one frame: through 16-bit samples, which keep far more precision than
/// any video format carries.
fn upscale_frame(up: &mut Upscaler, frame: &RgbFrame) -> Result<RgbFrame> {
    let px: Vec<u16> = frame.data.iter().map(|&v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16).collect();
    let img = ImageView {
        width: frame.width as u32,
        height: frame.height as u32,
        channels: 3,
        samples: SamplesRef::U16(&px),
    };
    let out = up.upscale(&img)?;
    let data = match out.samples {
        Samples::U16(v) => v.iter().map(|&s| s as f32 / 65535.0).collect(),
        Samples::U8(v) => v.iter().map(|&s| s as f32 / 255.0).collect(),
    };
    Ok(RgbFrame { width: out.width as usize, height: out.height as usize, data })
}
