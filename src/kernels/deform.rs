//! Deformable convolution (DCNv1 and modulated DCNv2) as a deformable im2col feeding the same
//! packed GEMM as ordinary convolutions.
//!
//! For output pixel p and kernel tap k of deformable group g, the input is sampled bilinearly at
//! `p·stride - pad + k + Δ(p, g, k)`, optionally multiplied by a mask `sigmoid(m(p, g, k))`. The
//! offsets come from another tensor in the `torchvision.ops.deform_conv2d` layout: channel
//! `2·(g·K + k)` is Δy and `2·(g·K + k) + 1` is Δx; for the modulated form the mask logits follow
//! at channel `2·G·K + g·K + k` (EDVR's `conv_offset` output `cat(o1, o2, mask)` is used as is).
//!
//! Two border rules exist, and checkpoints depend on the one they were trained with:
//! - [`BorderRule::Torchvision`] (BasicSR/EDVR): a sample at (h, w) in (-1, H) x (-1, W) blends
//!   the in-range corners, out-of-range corners count as 0; anything further out is 0.
//! - [`BorderRule::Dcnv1`] (the original DCNv1 kernel, TDAN): a sample is 0 unless
//!   0 <= h < H and 0 <= w < W; otherwise it is bilinear from floor(h), except that when
//!   floor(h) >= H - 1 the row is clamped to H - 1 without blending (the same for w).

use super::conv::{Conv2d, ConvSpec};
use super::gemm::{run_line, Activation, KLayout, Line, Ops, SendPtr};
pub use super::sigmoid::sigmoid;
use super::sigmoid::sigmoid_slice;
use super::simd::{simd_dispatch, Simd};
use crate::cpu::CpuLevel;
use crate::tensor::{AlignedVec, Layout, Tensor};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BorderRule {
    Torchvision,
    Dcnv1,
}

/// Bilinear sample of one position: the four corner pixels (as offsets from the input base, or
/// `None` for a zero corner) and their weights, in torchvision's order (top-left, top-right,
/// bottom-left, bottom-right).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Corners {
    pub at: [Option<(usize, usize)>; 4],
    pub w: [f32; 4],
}

/// Corners and weights of a sample at (h, w) in an `hh x ww` image under `rule`.
#[inline]
pub fn corners(rule: BorderRule, h: f32, w: f32, hh: usize, ww: usize) -> Corners {
    let zero = Corners { at: [None; 4], w: [0.0; 4] };
    let (hf, wf) = (hh as f32, ww as f32);
    match rule {
        BorderRule::Torchvision => {
            if h <= -1.0 || hf <= h || w <= -1.0 || wf <= w {
                return zero;
            }
            let (h_low, w_low) = (h.floor() as isize, w.floor() as isize);
            let (h_high, w_high) = (h_low + 1, w_low + 1);
            let (lh, lw) = (h - h_low as f32, w - w_low as f32);
            let (hh_, hw_) = (1.0 - lh, 1.0 - lw);
            let ok = |y: isize, x: isize| {
                (y >= 0 && x >= 0 && y < hh as isize && x < ww as isize).then_some((y as usize, x as usize))
            };
            Corners {
                at: [ok(h_low, w_low), ok(h_low, w_high), ok(h_high, w_low), ok(h_high, w_high)],
                w: [hh_ * hw_, hh_ * lw, lh * hw_, lh * lw],
            }
        }
        BorderRule::Dcnv1 => {
            if !(h >= 0.0 && w >= 0.0 && h < hf && w < wf) {
                return zero;
            }
            let (mut h, mut w) = (h, w);
            let mut h_low = h.floor() as usize;
            let mut w_low = w.floor() as usize;
            let h_high;
            let w_high;
            if h_low >= hh - 1 {
                h_low = hh - 1;
                h_high = h_low;
                h = h_low as f32;
            } else {
                h_high = h_low + 1;
            }
            if w_low >= ww - 1 {
                w_low = ww - 1;
                w_high = w_low;
                w = w_low as f32;
            } else {
                w_high = w_low + 1;
            }
            let (lh, lw) = (h - h_low as f32, w - w_low as f32);
            let (hh_, hw_) = (1.0 - lh, 1.0 - lw);
            Corners {
                at: [
                    Some((h_low, w_low)),
                    Some((h_low, w_high)),
                    Some((h_high, w_low)),
                    Some((h_high, w_high)),
                ],
                w: [hh_ * hw_, hh_ * lw, lh * hw_, lh * lw],
            }
        }
    }
}

/// A deformable convolution prepared for one CPU level.
#[derive(Clone, Debug)]
pub struct DeformConv2d {
    conv: Conv2d,
    groups: usize,
    modulated: bool,
    rule: BorderRule,
}

impl DeformConv2d {
    /// `weight` is OIHW; `groups` deformable groups must divide `cin`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        level: CpuLevel,
        spec: ConvSpec,
        weight: &[f32],
        bias: Option<&[f32]>,
        act: Activation,
        groups: usize,
        modulated: bool,
        rule: BorderRule,
    ) -> Self {
        assert!(groups > 0 && spec.cin % groups == 0, "deformable groups must divide the input channels");
        DeformConv2d { conv: Conv2d::new(level, spec, weight, bias, act, None), groups, modulated, rule }
    }

    pub fn spec(&self) -> &ConvSpec {
        self.conv.spec()
    }

    /// The same (shared) weights with another activation.
    pub fn with_act(&self, act: Activation) -> Self {
        DeformConv2d { conv: self.conv.with_act(act), ..self.clone() }
    }

    pub fn groups(&self) -> usize {
        self.groups
    }

    pub fn modulated(&self) -> bool {
        self.modulated
    }

    pub fn rule(&self) -> BorderRule {
        self.rule
    }

    pub fn bytes(&self) -> usize {
        self.conv.bytes()
    }

    /// Channels the offset (and mask) tensor must have.
    pub fn offset_channels(&self) -> usize {
        let k = self.spec().kh * self.spec().kw;
        (if self.modulated { 3 } else { 2 }) * self.groups * k
    }

    /// # Safety
    /// `x` valid for `xl.len()` reads, `off` for `ol.len()` reads (offsets in its first channels as
    /// described in the module docs; `ol` has the output's spatial size), `y` for `yl.len()` writes
    /// and not overlapping the inputs; `res` as in [`Conv2d::run_raw`].
    pub(crate) unsafe fn run_raw(
        &self,
        x: *const f32,
        xl: &Layout,
        off: *const f32,
        ol: &Layout,
        y: *mut f32,
        yl: &Layout,
        res: Option<(*const f32, &Layout, f32)>,
    ) {
        let s = *self.spec();
        assert_eq!(xl.c, s.cin);
        assert_eq!(yl.c, s.cout);
        assert_eq!(s.out_size(xl.h, xl.w), Some((yl.h, yl.w)), "output size");
        assert_eq!((ol.h, ol.w), (yl.h, yl.w), "offsets must have the output's size");
        assert!(
            ol.c >= self.offset_channels(),
            "offset tensor has {} channels, need {}",
            ol.c,
            self.offset_channels()
        );
        if let Some((_, rl, _)) = res {
            assert_eq!((rl.h, rl.w), (yl.h, yl.w));
        }
        assert!(xl.hp() * xl.wp() <= i32::MAX as usize, "input grid too large for deformable sampling");
        let k = s.k();
        let kl = KLayout::dense(k);
        let (b, ep) = self.conv.gemm_parts(res.map_or(1.0, |r| r.2));
        let ops = Ops::new(b, &kl, &ep);
        let level = self.conv.level();
        let (xp, op, yp) = (SendPtr(x as *mut f32), SendPtr(off as *mut f32), SendPtr(y));
        let rp = SendPtr(res.map_or(std::ptr::null(), |r| r.0) as *mut f32);
        let rl = res.map(|r| *r.1);
        let (xl, ol) = (*xl, *ol);
        let this = self;
        // Work items are runs of up to `chunk` output pixels of one row, whose im2col stays in L2
        // while the GEMM reads it (DCNv1 64->64 at 320x180: 540 items; runs of 32 to 320 pixels
        // took the same time, 16 was slower).
        let chunk = chunk_len(k);
        let chunks = yl.w.div_ceil(chunk);
        let samples = self.groups * s.kh * s.kw;
        (0..yl.h * chunks).into_par_iter().for_each(|item| {
            SCRATCH.with_borrow_mut(|sc| {
                sc.fit(chunk, k, s.cin, samples, self.modulated);
                let (xp, op, yp, rp) = (xp, op, yp, rp);
                let (oy, x0) = (item % yl.h, (item / yl.h) * chunk);
                let n = chunk.min(yl.w - x0);
                fill_chunk(level, this, xp.0, &xl, op.0, &ol, oy, x0, n, sc);
                let col = &sc.col;
                let line = Line {
                    m: n,
                    a: col.as_ptr(),
                    a_rs: k as isize,
                    c: yp.0.offset(yl.offset(oy as isize, x0 as isize)),
                    c_rs: yl.cs as isize,
                    res: match rl {
                        Some(rl) => rp.0.offset(rl.offset(oy as isize, x0 as isize)),
                        None => std::ptr::null(),
                    },
                    res_rs: rl.map_or(0, |rl| rl.cs as isize),
                    res2: std::ptr::null(),
                    res2_rs: 0,
                };
                run_line(level, &line, &ops, 0..b.panels());
            })
        });
    }

    /// Safe wrapper: output with border `out_pad`.
    pub fn forward(&self, x: &Tensor, off: &Tensor, out_pad: usize) -> Tensor {
        let (oh, ow) = self.spec().out_size(x.layout.h, x.layout.w).expect("kernel larger than input");
        let mut y = Tensor::zeros(oh, ow, self.spec().cout, out_pad);
        let yl = y.layout;
        // SAFETY: owned tensors of exactly their layouts' lengths; run_raw checks the geometry.
        unsafe {
            self.run_raw(
                x.data.as_ptr(),
                &x.layout,
                off.data.as_ptr(),
                &off.layout,
                y.data.as_mut_ptr(),
                &yl,
                None,
            )
        };
        y
    }
}

/// Most output pixels per work item of [`DeformConv2d::run_raw`].
const CHUNK: usize = 256;

/// Output pixels per work item for `k` im2col values per pixel: the item's im2col (written tap by
/// tap, then swept by the GEMM once per panel) takes at most 256 KiB, half of a small L2.
fn chunk_len(k: usize) -> usize {
    ((256 << 10) / (4 * k.max(1))).clamp(16, CHUNK)
}

/// Buffers of one worker: the im2col of a work item and the sampling plan of one pixel.
struct Scratch {
    col: AlignedVec,
    /// `cin` zeros: the source of out-of-image corners.
    zeros: Vec<f32>,
    /// Per sample `g·K + t`: row before the offset and kernel column (as floats, for the
    /// vectorised plan), index of the top-left corner's pixel in the stored grid, counted from
    /// the interior origin (negative where a corner lies outside, which takes the border-rule
    /// path) and the bilinear weights (times the mask).
    hb: Vec<f32>,
    kx: Vec<f32>,
    pos: Vec<i32>,
    /// Bilinear weight `k` (corner order of [`Corners`]) of sample `si` at `wts[k·samples + si]`:
    /// four runs that the plan stores whole vectors into, where one `[f32; 4]` per sample took
    /// a transpose of every vector of weights.
    wts: Vec<f32>,
    /// The masks of the item's pixels, `j·samples + si` (ones for an unmodulated layer).
    mask: Vec<f32>,
}

impl Scratch {
    const fn empty() -> Self {
        Scratch {
            col: AlignedVec::new_empty(),
            zeros: Vec::new(),
            hb: Vec::new(),
            kx: Vec::new(),
            pos: Vec::new(),
            wts: Vec::new(),
            mask: Vec::new(),
        }
    }

    /// Grow the buffers for work items of up to `chunk` pixels of a layer with `k` im2col values
    /// per pixel, `cin` channels and `samples` samples per pixel; an unmodulated layer's masks
    /// are set to ones (a modulated layer may have left its sigmoids there).
    fn fit(&mut self, chunk: usize, k: usize, cin: usize, samples: usize, modulated: bool) {
        self.col.ensure_len(chunk * k);
        grow(&mut self.zeros, cin, 0.0);
        grow(&mut self.hb, samples, 0.0);
        grow(&mut self.kx, samples, 0.0);
        grow(&mut self.pos, samples, 0);
        grow(&mut self.wts, 4 * samples, 0.0);
        grow(&mut self.mask, if modulated { chunk * samples } else { samples }, 1.0);
        if !modulated {
            self.mask[..samples].fill(1.0);
        }
    }
}

fn grow<T: Clone>(v: &mut Vec<T>, len: usize, value: T) {
    if v.len() < len {
        v.resize(len, value);
    }
}

thread_local! {
    /// One worker's buffers, kept between calls: rayon splits the items into many pieces, and a
    /// fresh zeroed im2col per piece (260 KB for 64 channels) showed up in profiles as page faults.
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new(Scratch::empty()) };
}

simd_dispatch! {
    /// Fill the deformable im2col of output pixels `x0..x0 + n` of row `oy`:
    /// `col[j][(ky·kw + kx)·cin + c]` (the K order of the packed weights) at `sc.col + j·K`.
    ///
    /// # Safety
    /// `x`, `off` valid for their layouts; `sc` made by [`Scratch::new`] for at least `n` pixels,
    /// this layer's K, channels and taps.
    #[allow(clippy::too_many_arguments)]
    fn fill_chunk(
        d: &DeformConv2d,
        x: *const f32,
        xl: &Layout,
        off: *const f32,
        ol: &Layout,
        oy: usize,
        x0: usize,
        n: usize,
        sc: &mut Scratch,
    ) = fill_chunk_simd;
}

/// The im2col runs pixel by pixel (consecutive pixels sample overlapping neighbourhoods, which
/// stay in L1), in two passes per pixel: the positions, bilinear weights and corner indices of all
/// its samples (straight-line float code over arrays, which the compiler vectorises), then the
/// channel blends (independent loads that the core overlaps). Interleaved, the scalar position
/// arithmetic stood between the loads of consecutive blends.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn fill_chunk_simd<S: Simd>(
    s: S,
    d: &DeformConv2d,
    x: *const f32,
    xl: &Layout,
    off: *const f32,
    ol: &Layout,
    oy: usize,
    x0: usize,
    n: usize,
    sc: &mut Scratch,
) {
    let sp = d.spec();
    let (kw, cin) = (sp.kw, sp.cin);
    let taps = sp.kh * kw;
    let cpg = cin / d.groups;
    let k = taps * cin;
    let gk = d.groups * taps;
    let mask_base = 2 * gk;
    let (hf, wf) = (xl.h as f32, xl.w as f32);
    let (cs, rs) = (xl.cs, xl.row_stride());
    // The interior origin: pixel (0, 0) of the input inside its zero border.
    let x = x.offset(xl.offset(0, 0));
    let col = sc.col.as_mut_ptr();
    let zeros = sc.zeros.as_ptr();
    // Per sample (g·K + t): the row before its offset (fixed for the row), the kernel column.
    for si in 0..gk {
        let t = si % taps;
        sc.hb[si] = (oy * sp.stride + t / kw) as f32 - sp.pad as f32;
        sc.kx[si] = (t % kw) as f32;
    }
    let padf = sp.pad as f32;
    if d.modulated {
        // All the item's masks first, fetching the offsets and logits of the pixel
        // `OFFSET_PREFETCH` ahead: the map was just written by the offset convolution and has left
        // the caches (50 MB for EDVR at 320x180), and the hardware prefetcher alone left this
        // loop waiting on memory (DCNv2 at 320x180 on one thread: 106 -> 92 ms with the prefetch,
        // distances 4 to 6 equally good, 10 worse).
        for j in 0..n {
            let o = off.offset(ol.offset(oy as isize, (x0 + j) as isize));
            if j + OFFSET_PREFETCH < n {
                s.prefetch_floats(
                    off.offset(ol.offset(oy as isize, (x0 + j + OFFSET_PREFETCH) as isize)),
                    3 * gk,
                );
            }
            sigmoid_slice(s, o.add(mask_base), sc.mask.as_mut_ptr().add(j * gk), gk);
        }
    }
    let wp = xl.wp() as i32;
    for j in 0..n {
        let ox = x0 + j;
        let o = off.offset(ol.offset(oy as isize, ox as isize));
        if !d.modulated && j + OFFSET_PREFETCH < n {
            // The mask loop above has fetched a modulated layer's offsets already.
            s.prefetch_floats(off.offset(ol.offset(oy as isize, (ox + OFFSET_PREFETCH) as isize)), 2 * gk);
        }
        let row = col.add(j * k);
        let mask = if d.modulated { j * gk } else { 0 };
        let oxf = (ox * sp.stride) as f32;
        plan(
            std::slice::from_raw_parts(o, 2 * gk),
            &sc.hb[..gk],
            &sc.kx[..gk],
            &sc.mask[mask..mask + gk],
            oxf - padf,
            hf,
            wf,
            wp,
            &mut sc.pos[..gk],
            &mut sc.wts[..4 * gk],
        );
        let px = Pixel { x, cs, rs, row, cin, cpg, taps, zeros, sc: &*sc, mask, o, oxp: oxf - padf };
        if cpg == S::LANES {
            pixel_blends::<S, true>(s, d, xl, &px);
        } else {
            pixel_blends::<S, false>(s, d, xl, &px);
        }
    }
}

/// Pixels ahead whose offset record [`fill_chunk_simd`] prefetches (in the mask loop of a
/// modulated layer, else in the blend loop).
const OFFSET_PREFETCH: usize = 4;

/// What the channel blends of one output pixel read: the planned samples in `sc`, the input
/// (interior origin `x`, strides `cs`/`rs`), the pixel's offsets `o` and its im2col `row`.
struct Pixel<'a> {
    x: *const f32,
    cs: usize,
    rs: usize,
    row: *mut f32,
    cin: usize,
    cpg: usize,
    taps: usize,
    zeros: *const f32,
    sc: &'a Scratch,
    /// Where the pixel's masks start in `sc.mask`.
    mask: usize,
    o: *const f32,
    /// The pixel's input column before kernel column and offset: `ox·stride - pad`.
    oxp: f32,
}

/// The channel blends of one pixel's samples, monomorphised on groups of exactly one vector (64
/// channels in 8 groups on AVX2): the per-sample work is then a handful of instructions, where the
/// general loop spent more on bookkeeping than on the four loads. Inside the image the mask is
/// already in the weights; the border path applies it after the blend.
///
/// # Safety
/// As [`fill_chunk_simd`], for the pixel that `px` describes after [`plan`] filled `px.sc`.
#[inline(always)]
unsafe fn pixel_blends<S: Simd, const ONE_VEC: bool>(s: S, d: &DeformConv2d, xl: &Layout, px: &Pixel) {
    let Pixel { x, cs, rs, row, cin, cpg, taps, zeros, sc, mask, o, oxp } = *px;
    let (pos, wts, hb, kx) = (sc.pos.as_ptr(), sc.wts.as_ptr(), sc.hb.as_ptr(), sc.kx.as_ptr());
    let mask = sc.mask.as_ptr().add(mask);
    let rule = d.rule;
    let gk = d.groups * taps;
    // The corner offsets, opaque to the optimiser: seeing `rs = wp·cs` and `p = pos·cs`, LLVM
    // rewrote `p + rs` and `p + cs` as their own products, four multiplies per sample.
    let (cs1, rs1) = std::hint::black_box((cs, rs));
    for g in 0..d.groups {
        let xg = x.add(g * cpg);
        let dg = row.add(g * cpg);
        for t in 0..taps {
            let si = g * taps + t;
            let dst = dg.add(t * cin);
            let p0 = *pos.add(si);
            if p0 >= 0 {
                // All four corners inside: both border rules reduce to the plain bilinear
                // blend, with the same arithmetic as `corners` (so bit-identical to it).
                let p = xg.add(p0 as usize * cs);
                let ps = [p, p.add(cs1), p.add(rs1), p.add(rs1 + cs1)];
                if ONE_VEC {
                    blend_vec(s, dst, ps, [0, 1, 2, 3].map(|c| *wts.add(c * gk + si)));
                } else {
                    blend(s, dst, ps, [0, 1, 2, 3].map(|c| *wts.add(c * gk + si)), None, cpg);
                }
            } else {
                let h = *hb.add(si) + *o.add(2 * si);
                let w = oxp + *kx.add(si) + *o.add(2 * si + 1);
                let cr = corners(rule, h, w, xl.h, xl.w);
                let ps = cr.at.map(|a| match a {
                    Some((yy, xx)) => xg.add(yy * rs + xx * cs),
                    None => zeros,
                });
                let m = if d.modulated { Some(*mask.add(si)) } else { None };
                blend(s, dst, ps, cr.w, m, cpg);
            }
        }
    }
}

/// Sample positions of one pixel: sample `i` at row `hb[i] + off[2i]`, column
/// `oxp + kx[i] + off[2i + 1]` (the arithmetic of `corners`' callers). Where all four bilinear
/// corners lie inside the `hf x wf` image, `pos[i]` gets the index of the top-left corner's pixel
/// in the stored grid (`wp` pixels per row, counted from the interior origin) and `wts[k·n + i]`
/// its weight `k` times `mask[i]` (in `corners`' order and arithmetic, with the mask in the row
/// factors); elsewhere `pos[i] < 0`. Branch-free so that it vectorises.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn plan(
    off: &[f32],
    hb: &[f32],
    kx: &[f32],
    mask: &[f32],
    oxp: f32,
    hf: f32,
    wf: f32,
    wp: i32,
    pos: &mut [i32],
    wts: &mut [f32],
) {
    let n = pos.len();
    let (off, hb, kx, mask) = (&off[..2 * n], &hb[..n], &kx[..n], &mask[..n]);
    let (w01, w23) = wts[..4 * n].split_at_mut(2 * n);
    let (w0, w1) = w01.split_at_mut(n);
    let (w2, w3) = w23.split_at_mut(n);
    for i in 0..n {
        let h = hb[i] + off[2 * i];
        let w = oxp + kx[i] + off[2 * i + 1];
        let (hl, wl) = (h.floor(), w.floor());
        let inside = (hl >= 0.0) & (hl + 1.0 < hf) & (wl >= 0.0) & (wl + 1.0 < wf);
        let (lh, lw) = (h - hl, w - wl);
        // The mask joins the row weights (exact for an unmodulated layer's ones).
        let (hh, lh, hw) = ((1.0 - lh) * mask[i], lh * mask[i], 1.0 - lw);
        (w0[i], w1[i], w2[i], w3[i]) = (hh * hw, hh * lw, lh * hw, lh * lw);
        // Positions outside (NaN included: its comparisons are false) become row -1, column 0
        // before the conversion, so every converted value is a small integer and the conversion
        // can be the plain vector instruction instead of `as`'s saturating scalar sequence; the
        // index of (-1, 0) is `-wp`, negative.
        let (fy, fx) = if inside { (hl, wl) } else { (-1.0, 0.0) };
        // SAFETY: `fy`, `fx` are integral, finite and within the image (or -1/0), so in i32 range.
        let (iy, ix) = unsafe { (fy.to_int_unchecked::<i32>(), fx.to_int_unchecked::<i32>()) };
        // In range: `run_raw` checks that the grid has fewer than 2^31 pixels.
        pos[i] = iy * wp + ix;
    }
}

/// [`blend`] of exactly one vector, without a mask.
#[inline(always)]
unsafe fn blend_vec<S: Simd>(s: S, dst: *mut f32, p: [*const f32; 4], w: [f32; 4]) {
    let v = p.map(|q| s.load(q));
    s.store(dst, sum4(s, w.map(|w| s.splat(w)), v));
}

/// `w0·v0 + w1·v1 + w2·v2 + w3·v3`, left to right, one multiply and three fused multiply-adds
/// (so the FMA levels agree bit for bit; the portable level rounds each product).
#[inline(always)]
fn sum4<S: Simd>(s: S, w: [S::V; 4], v: [S::V; 4]) -> S::V {
    s.fma(w[3], v[3], s.fma(w[2], v[2], s.fma(w[1], v[1], s.mul(w[0], v[0]))))
}

/// `dst[c] = m · (w0·p0[c] + w1·p1[c] + w2·p2[c] + w3·p3[c])` for `c < len`, summed as [`sum4`].
#[inline(always)]
unsafe fn blend<S: Simd>(s: S, dst: *mut f32, p: [*const f32; 4], w: [f32; 4], m: Option<f32>, len: usize) {
    let wv = w.map(|w| s.splat(w));
    let mv = m.map(|m| s.splat(m));
    let sum = |v: [S::V; 4]| {
        let acc = sum4(s, wv, v);
        match mv {
            Some(m) => s.mul(m, acc),
            None => acc,
        }
    };
    let mut c = 0;
    while c + S::LANES <= len {
        let v = p.map(|q| s.load(q.add(c)));
        s.store(dst.add(c), sum(v));
        c += S::LANES;
    }
    if c < len {
        let r = len - c;
        let v = p.map(|q| s.load_part(q.add(c), r));
        s.store_part(dst.add(c), sum(v), r);
    }
}

/// Scalar reference over dense HWC data (f64 accumulation of the convolution; sampling as the
/// kernels do it, in f32): `off` is dense HWC of the output size with at least
/// `(2 or 3)·groups·K` channels.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    x: &[f32],
    h: usize,
    w: usize,
    off: &[f32],
    off_c: usize,
    spec: &ConvSpec,
    groups: usize,
    modulated: bool,
    rule: BorderRule,
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (oh, ow) = spec.out_size(h, w).expect("kernel larger than input");
    let ConvSpec { cin, cout, kh, kw, stride, pad } = *spec;
    let taps = kh * kw;
    let cpg = cin / groups;
    let mut y = vec![0.0f32; oh * ow * cout];
    for oy in 0..oh {
        for ox in 0..ow {
            let o = &off[(oy * ow + ox) * off_c..];
            // Sampled columns for this pixel.
            let mut colv = vec![0.0f32; taps * cin];
            for g in 0..groups {
                for t in 0..taps {
                    let (ky, kx) = (t / kw, t % kw);
                    let (dy, dx) = (o[2 * (g * taps + t)], o[2 * (g * taps + t) + 1]);
                    let m = if modulated { sigmoid(o[2 * groups * taps + g * taps + t]) } else { 1.0 };
                    let hh = (oy * stride + ky) as f32 - pad as f32 + dy;
                    let ww = (ox * stride + kx) as f32 - pad as f32 + dx;
                    let cr = corners(rule, hh, ww, h, w);
                    for c in g * cpg..(g + 1) * cpg {
                        let px = |i: usize| cr.at[i].map_or(0.0, |(yy, xx)| x[(yy * w + xx) * cin + c]);
                        let v = cr.w[0] * px(0) + cr.w[1] * px(1) + cr.w[2] * px(2) + cr.w[3] * px(3);
                        colv[t * cin + c] = m * v;
                    }
                }
            }
            for oc in 0..cout {
                let mut acc = bias.map_or(0.0, |b| b[oc] as f64);
                for t in 0..taps {
                    let (ky, kx) = (t / kw, t % kw);
                    for c in 0..cin {
                        acc += colv[t * cin + c] as f64 * weight[((oc * cin + c) * kh + ky) * kw + kx] as f64;
                    }
                }
                y[(oy * ow + ox) * cout + oc] = acc as f32;
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::rand_vec;

    #[test]
    fn border_rules() {
        // Torchvision: just outside (-1, H) is zero, inside blends in-range corners.
        let c = corners(BorderRule::Torchvision, -0.5, 0.0, 4, 4);
        assert_eq!(c.at[0], None);
        assert_eq!(c.at[2], Some((0, 0)));
        assert_eq!(c.w[2], 0.5);
        assert_eq!(corners(BorderRule::Torchvision, -1.0, 0.0, 4, 4).w, [0.0; 4]);
        // DCNv1: negative is zero; beyond the last row clamps without blending.
        assert_eq!(corners(BorderRule::Dcnv1, -0.5, 1.0, 4, 4).w, [0.0; 4]);
        let c = corners(BorderRule::Dcnv1, 3.5, 1.25, 4, 4);
        assert_eq!(c.at, [Some((3, 1)), Some((3, 2)), Some((3, 1)), Some((3, 2))]);
        assert_eq!(c.w, [0.75, 0.25, 0.0, 0.0]);
        let t = corners(BorderRule::Torchvision, 3.5, 1.25, 4, 4);
        assert_eq!(t.at[2], None, "torchvision drops the out-of-range bottom corners instead");
    }

    fn check(
        spec: ConvSpec,
        h: usize,
        w: usize,
        groups: usize,
        modulated: bool,
        rule: BorderRule,
        off_scale: f32,
    ) {
        let (oh, ow) = spec.out_size(h, w).unwrap();
        let taps = spec.kh * spec.kw;
        let off_c = (if modulated { 3 } else { 2 }) * groups * taps + 1; // one spare channel
        let x = rand_vec(h * w * spec.cin, 1, 1.0);
        let off = rand_vec(oh * ow * off_c, 2, off_scale);
        let wt = rand_vec(spec.cout * spec.k(), 3, 0.5);
        let bias = rand_vec(spec.cout, 4, 0.1);
        let want = reference(&x, h, w, &off, off_c, &spec, groups, modulated, rule, &wt, Some(&bias));
        let xt = Tensor::from_hwc(h, w, spec.cin, 1, &x);
        let ot = Tensor::from_hwc(oh, ow, off_c, 0, &off);
        for level in CpuLevel::supported() {
            let d =
                DeformConv2d::new(level, spec, &wt, Some(&bias), Activation::None, groups, modulated, rule);
            let got = d.forward(&xt, &ot, 1).to_hwc();
            let tol = 2e-5 * (spec.k() as f32).sqrt();
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert!((g - r).abs() <= tol, "{level} {rule:?} mod={modulated} [{i}]: {g} vs {r}");
            }
        }
    }

    #[test]
    fn matches_reference_on_every_level() {
        for rule in [BorderRule::Torchvision, BorderRule::Dcnv1] {
            for modulated in [false, true] {
                // Offsets up to +-6 px push samples outside small images, exercising both rules.
                for (h, w) in [(1, 1), (3, 5), (7, 6), (9, 13)] {
                    check(ConvSpec::same(16, 24, 3), h, w, 8, modulated, rule, 6.0);
                    check(ConvSpec::same(12, 9, 3), h, w, 3, modulated, rule, 1.5);
                }
                check(
                    ConvSpec { cin: 8, cout: 16, kh: 3, kw: 3, stride: 2, pad: 1 },
                    11,
                    8,
                    2,
                    modulated,
                    rule,
                    2.0,
                );
            }
        }
    }

    #[test]
    fn rows_wider_than_a_work_item_and_odd_group_widths() {
        // More output pixels per row than a work item has: items split rows; 3 channels per group hit the
        // partial-vector tail of the blend on every level, 20 per group a full vector plus a tail.
        for rule in [BorderRule::Torchvision, BorderRule::Dcnv1] {
            for modulated in [false, true] {
                check(ConvSpec::same(6, 5, 3), 2, chunk_len(54) + 44, 2, modulated, rule, 3.0);
                check(ConvSpec::same(40, 7, 3), 3, 11, 2, modulated, rule, 3.0);
            }
        }
    }

    #[test]
    fn groups_of_exactly_one_vector() {
        // 4, 8 and 16 channels per group: one NEON, AVX2 or AVX-512 vector, the monomorphised
        // blend of each level (and a tail or several vectors on the others).
        for rule in [BorderRule::Torchvision, BorderRule::Dcnv1] {
            for modulated in [false, true] {
                for (cin, groups) in [(16, 4), (64, 8), (32, 2)] {
                    for (h, w) in [(1, 1), (4, 9), (6, 5)] {
                        check(ConvSpec::same(cin, 5, 3), h, w, groups, modulated, rule, 4.0);
                    }
                }
            }
        }
    }

    #[test]
    fn worker_buffers_carry_nothing_between_layers() {
        // One worker runs a wide modulated layer (large im2col, sigmoid masks left behind), then
        // smaller unmodulated ones, then the wide one again: each must match the reference.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| {
            for (spec, groups, modulated) in [
                (ConvSpec::same(32, 8, 3), 4, true),
                (ConvSpec::same(6, 5, 3), 2, false),
                (ConvSpec::same(16, 7, 1), 8, false),
                (ConvSpec::same(32, 8, 3), 4, true),
            ] {
                check(spec, 5, 7, groups, modulated, BorderRule::Torchvision, 2.0);
            }
        });
    }

    #[test]
    fn zero_offsets_equal_an_ordinary_convolution() {
        let spec = ConvSpec::same(16, 20, 3);
        let (h, w) = (6, 9);
        let x = rand_vec(h * w * 16, 7, 1.0);
        let wt = rand_vec(spec.cout * spec.k(), 8, 0.5);
        let plain = super::super::conv::reference(&x, h, w, &spec, &wt, None);
        let xt = Tensor::from_hwc(h, w, 16, 1, &x);
        let off = Tensor::zeros(h, w, 2 * 4 * 9, 0);
        for level in CpuLevel::supported() {
            for rule in [BorderRule::Torchvision, BorderRule::Dcnv1] {
                let d = DeformConv2d::new(level, spec, &wt, None, Activation::None, 4, false, rule);
                let got = d.forward(&xt, &off, 0).to_hwc();
                for (g, r) in got.iter().zip(&plain) {
                    assert!((g - r).abs() < 1e-4, "{level} {rule:?}: {g} vs {r}");
                }
            }
        }
    }
}
