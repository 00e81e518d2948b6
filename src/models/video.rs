//! Video networks, split for streaming: a frame graph computes each frame's features once, and a
//! window graph produces one output frame from the cached features of the frames in its window.

use crate::cpu::CpuLevel;
use crate::error::{Error, Result};
use crate::graph::{Arena, Graph, Plan};
use crate::tensor::{Layout, Tensor};

/// How a window is completed at the ends of a clip (frame indices outside `0..n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgePolicy {
    /// Repeat the first/last frame.
    Replicate,
    /// Mirror around the first/last frame (`-k -> k`).
    Reflection,
    /// BasicSR's `reflection_circle`: take frames from the far side of the window.
    ReflectionCircle,
    /// TDAN's evaluation rule: `k < 0 -> -k`, `k >= n -> n - 3`.
    Tdan,
}

impl EdgePolicy {
    pub fn name(self) -> &'static str {
        match self {
            EdgePolicy::Replicate => "replicate",
            EdgePolicy::Reflection => "reflection",
            EdgePolicy::ReflectionCircle => "reflection_circle",
            EdgePolicy::Tdan => "tdan",
        }
    }

    /// Frame indices of the window centred on `center` (`2·half + 1` of them) in a clip of `n`
    /// frames; `n = None` while the clip length is still unknown (indices past the end are then
    /// not final and the caller must wait). Any index the policy leaves outside `0..n` (clips
    /// shorter than the window) is clamped into the clip: the documented short-clip fallback.
    pub fn window(self, center: usize, half: usize, n: Option<usize>) -> Vec<usize> {
        let c = center as isize;
        let h = half as isize;
        let max = n.map(|n| n as isize - 1);
        (c - h..=c + h)
            .map(|i| {
                let idx = if i < 0 {
                    match self {
                        EdgePolicy::Replicate => 0,
                        EdgePolicy::Reflection | EdgePolicy::Tdan => -i,
                        EdgePolicy::ReflectionCircle => c + h - i,
                    }
                } else if max.is_some_and(|m| i > m) {
                    let m = max.expect("checked");
                    match self {
                        EdgePolicy::Replicate => m,
                        EdgePolicy::Reflection => 2 * m - i,
                        EdgePolicy::ReflectionCircle => (c - h) - (i - m),
                        EdgePolicy::Tdan => m + 1 - 3,
                    }
                } else {
                    i
                };
                match max {
                    Some(m) => idx.clamp(0, m.max(0)) as usize,
                    None => idx.max(0) as usize,
                }
            })
            .collect()
    }
}

impl std::str::FromStr for EdgePolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "replicate" => EdgePolicy::Replicate,
            "reflection" => EdgePolicy::Reflection,
            "reflection_circle" => EdgePolicy::ReflectionCircle,
            "tdan" => EdgePolicy::Tdan,
            other => {
                return Err(Error::Usage(format!(
                    "unknown edge policy '{other}' (replicate, reflection, reflection_circle, tdan)"
                )))
            }
        })
    }
}

/// A prepared video network.
pub struct VideoNetwork {
    pub(crate) frame: Graph,
    pub(crate) window: Graph,
    pub(crate) num_frames: usize,
    pub(crate) scale: usize,
    pub(crate) level: CpuLevel,
    pub(crate) in_affine: Vec<(f32, f32)>,
    pub(crate) out_affine: Vec<(f32, f32)>,
    /// Frame sides must be multiples of this (the feature pyramid halves them twice).
    pub(crate) multiple: usize,
    pub(crate) default_edge: EdgePolicy,
}

/// The cached features of one frame, and the frame itself in the network's range.
pub struct FrameFeatures {
    pub(crate) feats: Vec<Tensor>,
    pub(crate) frame: Tensor,
}

impl FrameFeatures {
    pub fn bytes(&self) -> usize {
        self.feats.iter().chain(std::iter::once(&self.frame)).map(|t| t.data.bytes()).sum()
    }
}

impl VideoNetwork {
    pub fn num_frames(&self) -> usize {
        self.num_frames
    }

    pub fn scale(&self) -> usize {
        self.scale
    }

    pub fn level(&self) -> CpuLevel {
        self.level
    }

    pub fn default_edge(&self) -> EdgePolicy {
        self.default_edge
    }

    /// Frame sides must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        self.multiple
    }

    pub fn frame_graph(&self) -> &Graph {
        &self.frame
    }

    pub fn window_graph(&self) -> &Graph {
        &self.window
    }

    fn check_size(&self, h: usize, w: usize) -> Result<()> {
        if h == 0 || w == 0 || h % self.multiple != 0 || w % self.multiple != 0 {
            return Err(Error::Usage(format!(
                "this video model needs frame sides that are multiples of {} (got {w}x{h})",
                self.multiple
            )));
        }
        Ok(())
    }

    /// Plans of the frame and window graphs for `h x w` frames.
    pub fn plans(&self, h: usize, w: usize) -> Result<(Plan, Plan)> {
        self.check_size(h, w)?;
        let fp = Plan::new(&self.frame, h, w)
            .ok_or_else(|| Error::Usage(format!("{w}x{h} frames are too small")))?;
        let feat_sizes: Vec<(usize, usize)> =
            self.frame.outputs().iter().map(|&o| (fp.layouts[o].h, fp.layouts[o].w)).collect();
        let mut sizes = Vec::new();
        for _ in 0..self.num_frames {
            sizes.extend_from_slice(&feat_sizes);
        }
        sizes.push((h, w));
        let wp = Plan::with_inputs(&self.window, &sizes)
            .ok_or_else(|| Error::Usage(format!("{w}x{h} frames are too small")))?;
        Ok((fp, wp))
    }

    /// Features of one frame given as dense HWC RGB in [0,1].
    pub fn features(&self, rgb: &[f32], h: usize, w: usize, arena: &mut Arena) -> Result<FrameFeatures> {
        let (fp, _) = self.plans(h, w)?;
        if rgb.len() != h * w * 3 {
            return Err(Error::Usage(format!("{} values for a {w}x{h} RGB frame", rgb.len())));
        }
        let mut frame = Tensor::zeros(h, w, 3, 0);
        for (i, v) in frame.data.as_mut_slice().iter_mut().enumerate() {
            let (a, b) = self.in_affine[i % 3];
            *v = a * rgb[i] + b;
        }
        let mut feats = Vec::new();
        self.frame.run_multi(&fp, arena, &mut |_, buf, l| copy_in(&frame, buf, l), &mut |_, buf, l| {
            feats.push(copy_out(buf, l))
        });
        Ok(FrameFeatures { feats, frame })
    }

    /// One output frame (dense HWC RGB, [0,1] scale, unclamped) from the features of the frames of
    /// its window, in window order; the centre frame's own pixels come from the middle entry.
    pub fn window(&self, window: &[&FrameFeatures], arena: &mut Arena) -> Result<Vec<f32>> {
        if window.len() != self.num_frames {
            return Err(Error::Usage(format!("{} frames for a window of {}", window.len(), self.num_frames)));
        }
        let (h, w) = (window[0].frame.layout.h, window[0].frame.layout.w);
        if window.iter().any(|f| (f.frame.layout.h, f.frame.layout.w) != (h, w)) {
            return Err(Error::Usage("frames of different sizes in one window".into()));
        }
        let (_, wp) = self.plans(h, w)?;
        let per = self.frame.outputs().len();
        let center = &window[self.num_frames / 2].frame;
        let mut out = Vec::new();
        self.window.run_multi(
            &wp,
            arena,
            &mut |i, buf, l| {
                if i == per * self.num_frames {
                    copy_in(center, buf, l)
                } else {
                    copy_in(&window[i / per].feats[i % per], buf, l)
                }
            },
            &mut |_, buf, l| {
                out.reserve(l.h * l.w * l.c);
                for y in 0..l.h {
                    for x in 0..l.w {
                        let o = l.offset(y as isize, x as isize) as usize;
                        for c in 0..l.c {
                            let (a, b) = self.out_affine[c];
                            out.push(a * buf[o + c] + b);
                        }
                    }
                }
            },
        );
        Ok(out)
    }
}

fn copy_in(t: &Tensor, buf: &mut [f32], l: &Layout) {
    let tl = &t.layout;
    assert_eq!((tl.h, tl.w, tl.c), (l.h, l.w, l.c), "cached tensor does not match the plan");
    let src = t.data.as_slice();
    for y in 0..l.h {
        let s = tl.offset(y as isize, 0) as usize;
        let d = l.offset(y as isize, 0) as usize;
        if tl.cs == l.c && l.cs == l.c {
            buf[d..d + l.w * l.c].copy_from_slice(&src[s..s + l.w * l.c]);
        } else {
            for x in 0..l.w {
                let (s, d) = (s + x * tl.cs, d + x * l.cs);
                buf[d..d + l.c].copy_from_slice(&src[s..s + l.c]);
            }
        }
    }
}

fn copy_out(buf: &[f32], l: &Layout) -> Tensor {
    let mut t = Tensor::zeros(l.h, l.w, l.c, 0);
    let tl = t.layout;
    copy_in_raw(buf, l, t.data.as_mut_slice(), &tl);
    t
}

fn copy_in_raw(src: &[f32], sl: &Layout, dst: &mut [f32], dl: &Layout) {
    for y in 0..sl.h {
        for x in 0..sl.w {
            let s = sl.offset(y as isize, x as isize) as usize;
            let d = dl.offset(y as isize, x as isize) as usize;
            dst[d..d + sl.c].copy_from_slice(&src[s..s + sl.c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_policies_match_basicsr_and_tdan() {
        // BasicSR generate_frame_indices for a 5-frame window in a 10-frame clip.
        let n = Some(10);
        assert_eq!(EdgePolicy::Replicate.window(0, 2, n), [0, 0, 0, 1, 2]);
        assert_eq!(EdgePolicy::Reflection.window(0, 2, n), [2, 1, 0, 1, 2]);
        assert_eq!(EdgePolicy::ReflectionCircle.window(0, 2, n), [4, 3, 0, 1, 2]);
        assert_eq!(EdgePolicy::ReflectionCircle.window(1, 2, n), [4, 0, 1, 2, 3]);
        assert_eq!(EdgePolicy::Replicate.window(9, 2, n), [7, 8, 9, 9, 9]);
        assert_eq!(EdgePolicy::Reflection.window(9, 2, n), [7, 8, 9, 8, 7]);
        assert_eq!(EdgePolicy::ReflectionCircle.window(9, 2, n), [7, 8, 9, 6, 5]);
        assert_eq!(EdgePolicy::ReflectionCircle.window(8, 2, n), [6, 7, 8, 9, 5]);
        // TDAN eval.py: k < 0 -> -k, k >= n -> n - 3.
        assert_eq!(EdgePolicy::Tdan.window(0, 2, n), [2, 1, 0, 1, 2]);
        assert_eq!(EdgePolicy::Tdan.window(9, 2, n), [7, 8, 9, 7, 7]);
        // Interior windows are plain.
        for p in
            [EdgePolicy::Replicate, EdgePolicy::Reflection, EdgePolicy::ReflectionCircle, EdgePolicy::Tdan]
        {
            assert_eq!(p.window(5, 2, n), [3, 4, 5, 6, 7]);
            // A clip shorter than the window stays inside the clip.
            assert!(p.window(0, 2, Some(2)).iter().all(|&i| i < 2));
            assert!(p.window(0, 2, Some(1)).iter().all(|&i| i == 0));
        }
    }
}
