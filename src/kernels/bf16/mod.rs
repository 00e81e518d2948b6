//! Stride-1 "same" convolutions with bf16 operands and fp32 sums on Intel AMX (`--precision bf16`).
//!
//! The input is converted once per layer to a bf16 NHWC copy with the border and `cin` padded to
//! a multiple of 32 channels, so that every tap of 16 consecutive output pixels is one AMX tile
//! row per pixel (`tileloadd` with the pixel stride): the im2col stays implicit. Weights are packed
//! once into 16x32 B tiles in the pair-interleaved (VNNI) order `tdpbf16ps` reads. One kernel call
//! computes 32 pixels x 32 channels (four fp32 accumulator tiles, two A and two B tiles per K
//! step of 32); the tiles are then stored to a small buffer and the usual epilogue (bias,
//! activation, residuals) writes the fp32 output.
//!
//! Each output is a direct sum over the same K steps wherever its pixel lies, so tiled and
//! untiled runs agree bit for bit. Its error against fp32 is that of rounding the operands to 8
//! significant bits (the products are exact in fp32 and summed in fp32).
//!
//! Where the CPU has no AMX the layers stay fp32 (the callers check [`amx_available`]); the tile
//! unit is also emulated in plain Rust, with the instruction's summation order, for tests on any
//! machine.

#[cfg(target_arch = "x86_64")]
mod amx;

use super::gemm::{epilogue, Activation, Out, SendPtr};
use super::simd::{simd_dispatch, Simd};
use crate::cpu::CpuLevel;
use crate::tensor::{AlignedVec, Layout};
use rayon::prelude::*;
use std::sync::Mutex;

/// bf16 values of K per step: one 64-byte tile row.
const KC: usize = 32;
/// Rows of every tile: pixels of A and C, K pairs of B.
const ROWS: usize = 16;
/// Output channels of a C or B tile.
const NT: usize = 16;
/// u16 in one A or B tile.
const TILE_U16: usize = ROWS * KC;
/// f32 in one C tile.
const TILE_FLOATS: usize = ROWS * NT;
/// Kernel blocks (32 pixels each) per parallel job.
const JOB_BLOCKS: usize = 8;

/// One 64-byte tile row, aligned to a cache line: a tile row that straddled two lines would
/// cost two accesses.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
struct Line([u16; KC]);

const ZERO_LINE: Line = Line([0; KC]);

/// Whether this machine runs bf16 convolutions at `level` (AMX needs the AVX-512 level: a lower
/// `SUPERRES_CPU` turns it off with the rest).
pub fn amx_available(level: CpuLevel) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        level == CpuLevel::Avx512 && amx::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = level;
        false
    }
}

/// fp32 to bf16, rounded to nearest even (NaN stays NaN).
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

#[inline]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Which unit runs the tile products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TileUnit {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Amx,
    /// Plain Rust with `tdpbf16ps`'s order of operations (tests).
    Emulated,
}

/// A convolution prepared for bf16 tiles.
#[derive(Debug)]
pub struct Bf16Conv {
    level: CpuLevel,
    unit: TileUnit,
    cin: usize,
    cout: usize,
    k: usize,
    /// `cin` rounded up to a whole step.
    cin_p: usize,
    /// Pairs of 16-channel output tiles.
    npairs: usize,
    /// K steps: `k² · cin_p / 32`.
    steps: usize,
    /// `[pair][step][2 tiles][16 K pairs]` rows of `[16 channels x 2]`.
    b: Vec<Line>,
    bias: Option<AlignedVec>,
    prelu: Option<AlignedVec>,
}

impl Bf16Conv {
    /// Whether this geometry runs here: stride 1, odd square kernel with "same" padding, enough
    /// channels to fill tiles.
    pub fn fits(spec: &super::conv::ConvSpec) -> bool {
        spec.stride == 1
            && spec.kh == spec.kw
            && spec.kh % 2 == 1
            && spec.pad == spec.kh / 2
            && spec.cin >= 16
            && spec.cout >= 16
    }

    /// `weight` OIHW; AMX where [`amx_available`] holds for `level`, else the emulated unit (plain
    /// scalar Rust, for tests: the convolution layers only build this where AMX is available).
    pub fn new(
        level: CpuLevel,
        spec: &super::conv::ConvSpec,
        weight: &[f32],
        bias: Option<&[f32]>,
        prelu: Option<&[f32]>,
    ) -> Self {
        let unit = if amx_available(level) { TileUnit::Amx } else { TileUnit::Emulated };
        Self::with_unit(level, unit, spec, weight, bias, prelu)
    }

    pub(crate) fn with_unit(
        level: CpuLevel,
        unit: TileUnit,
        spec: &super::conv::ConvSpec,
        weight: &[f32],
        bias: Option<&[f32]>,
        prelu: Option<&[f32]>,
    ) -> Self {
        assert!(Self::fits(spec), "no bf16 kernel for {spec:?}");
        assert!(unit == TileUnit::Emulated || amx_available(level), "AMX is not available here");
        let (cin, cout, k) = (spec.cin, spec.cout, spec.kh);
        assert_eq!(weight.len(), cout * cin * k * k, "weight size");
        let cin_p = cin.next_multiple_of(KC);
        let npairs = cout.div_ceil(2 * NT);
        let chunks = cin_p / KC;
        let steps = k * k * chunks;
        let mut b = vec![ZERO_LINE; npairs * steps * 2 * ROWS];
        for p in 0..npairs {
            for s in 0..steps {
                let (tap, chunk) = (s / chunks, s % chunks);
                let (ky, kx) = (tap / k, tap % k);
                for t in 0..2 {
                    let tile = &mut b[((p * steps + s) * 2 + t) * ROWS..][..ROWS];
                    for (r, row) in tile.iter_mut().enumerate() {
                        for n in 0..NT {
                            for e in 0..2 {
                                let (ci, o) = (chunk * KC + 2 * r + e, p * 2 * NT + t * NT + n);
                                if ci < cin && o < cout {
                                    row.0[2 * n + e] = to_bf16(weight[((o * cin + ci) * k + ky) * k + kx]);
                                }
                            }
                        }
                    }
                }
            }
        }
        let padded = |v: &[f32]| {
            assert_eq!(v.len(), cout);
            let mut a = AlignedVec::zeros(npairs * 2 * NT);
            a.as_mut_slice()[..cout].copy_from_slice(v);
            a
        };
        Bf16Conv {
            level,
            unit,
            cin,
            cout,
            k,
            cin_p,
            npairs,
            steps,
            b,
            bias: bias.map(padded),
            prelu: prelu.map(padded),
        }
    }

    pub fn has_prelu(&self) -> bool {
        self.prelu.is_some()
    }

    /// Bytes of prepared weights.
    pub fn bytes(&self) -> usize {
        self.b.len() * 64
            + [&self.bias, &self.prelu].iter().filter_map(|v| v.as_ref()).map(|v| v.bytes()).sum::<usize>()
    }

    /// `y = res2 + s2·(res + s·act(conv(x) + bias))` (each residual optional), as
    /// [`Conv2d::run_raw`](super::conv::Conv2d::run_raw).
    ///
    /// # Safety
    /// As `Conv2d::run_raw`: `x` valid for `xl.len()` reads with `xl.pad >= k/2`, `y` for
    /// `yl.len()` writes, not overlapping `x`; `res`, `res2` (which may alias `y` with the same
    /// layout) valid for reads.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn run_raw(
        &self,
        x: *const f32,
        xl: &Layout,
        y: *mut f32,
        yl: &Layout,
        act: Activation,
        res: Option<(*const f32, &Layout, f32)>,
        res2: Option<(*const f32, &Layout, f32)>,
    ) {
        self.run_impl(x, xl, y, yl, act, res, res2, &|job, blocks| run_job(self.level, job, blocks));
    }

    /// The layer with `jobs` running each range of blocks (the level's epilogue in `run_raw`;
    /// tests pass emulated vectors).
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_impl(
        &self,
        x: *const f32,
        xl: &Layout,
        y: *mut f32,
        yl: &Layout,
        act: Activation,
        res: Option<(*const f32, &Layout, f32)>,
        res2: Option<(*const f32, &Layout, f32)>,
        jobs: &(dyn Fn(&Job, std::ops::Range<usize>) + Sync),
    ) {
        let pad = self.k / 2;
        assert!(xl.pad >= pad && xl.c == self.cin && yl.c == self.cout);
        assert_eq!((xl.h, xl.w), (yl.h, yl.w), "same-size convolution");
        assert!(act != Activation::PRelu || self.prelu.is_some(), "PReLU needs slopes");
        if yl.h == 0 || yl.w == 0 {
            return;
        }
        let (h, w) = (yl.h, yl.w);
        let groups_per_row = w.div_ceil(ROWS);
        // The converted copy: `pad` rows and columns of border, the width rounded up to whole
        // 16-pixel groups (the columns past the border are zero and their outputs dropped).
        let wb = groups_per_row * ROWS + 2 * pad;
        let hb = h + 2 * pad;
        let mut xb = take_buffer(hb * wb * self.cin_p / KC);
        let xbp = SendPtr(xb.as_mut_ptr() as *mut u16);
        let xp = SendPtr(x as *mut f32);
        let (xl, cin, cin_p, unit) = (*xl, self.cin, self.cin_p, self.unit);
        (0..hb).into_par_iter().for_each(|yy| {
            let (xbp, xp) = (xbp, xp);
            let row = xbp.get().add(yy * wb * cin_p);
            // Columns -pad..w+pad exist in the fp32 buffer (its border is at least `pad`).
            let src = xp.get().offset(xl.offset(yy as isize - pad as isize, -(pad as isize)));
            let stored = w + 2 * pad;
            convert(unit, src, xl.cs, cin, stored, row, cin_p);
            std::ptr::write_bytes(row.add(stored * cin_p), 0, (wb - stored) * cin_p);
        });
        let chunks = cin_p / KC;
        let offs: Vec<isize> = (0..self.steps)
            .map(|s| {
                let (tap, chunk) = (s / chunks, s % chunks);
                (((tap / self.k) * wb + tap % self.k) * cin_p + chunk * KC) as isize
            })
            .collect();
        let groups = h * groups_per_row;
        let blocks = groups.div_ceil(2);
        let rp = SendPtr(res.map_or(std::ptr::null(), |r| r.0) as *mut f32);
        let rp2 = SendPtr(res2.map_or(std::ptr::null(), |r| r.0) as *mut f32);
        let job = Job {
            conv: self,
            xb: xbp,
            wb,
            offs: &offs,
            groups,
            groups_per_row,
            y: SendPtr(y),
            yl: *yl,
            act,
            res: rp,
            rl: res.map(|r| *r.1),
            scale: res.map_or(1.0, |r| r.2),
            res2: rp2,
            rl2: res2.map(|r| *r.1),
            scale2: res2.map_or(1.0, |r| r.2),
        };
        (0..blocks.div_ceil(JOB_BLOCKS)).into_par_iter().for_each(|j| {
            let b0 = j * JOB_BLOCKS;
            jobs(&job, b0..(b0 + JOB_BLOCKS).min(blocks));
        });
        give_back(xb);
    }
}

/// Everything a job needs, shared by all jobs of a layer.
struct Job<'a> {
    conv: &'a Bf16Conv,
    xb: SendPtr<u16>,
    wb: usize,
    offs: &'a [isize],
    groups: usize,
    groups_per_row: usize,
    y: SendPtr<f32>,
    yl: Layout,
    act: Activation,
    res: SendPtr<f32>,
    rl: Option<Layout>,
    scale: f32,
    res2: SendPtr<f32>,
    rl2: Option<Layout>,
    scale2: f32,
}

// SAFETY: jobs write disjoint output pixels; everything else is read-only during the layer.
unsafe impl Sync for Job<'_> {}

simd_dispatch! {
    /// # Safety
    /// As [`Bf16Conv::run_raw`], for the blocks given.
    fn run_job(job: &Job, blocks: std::ops::Range<usize>) = job_body;
}

#[inline(always)]
unsafe fn job_body<S: Simd>(s: S, job: &Job, blocks: std::ops::Range<usize>) {
    let cv = job.conv;
    let mut c = CTiles([0f32; 4 * TILE_FLOATS]);
    #[cfg(target_arch = "x86_64")]
    if cv.unit == TileUnit::Amx {
        amx::configure();
    }
    // Output-channel pairs outside, blocks inside: one pair's B (36 KiB for K = 576) stays in L1
    // across the job's blocks.
    for p in 0..cv.npairs {
        for blk in blocks.clone() {
            block_pair(s, job, blk, p, &mut c);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if cv.unit == TileUnit::Amx {
        amx::release();
    }
}

/// Output row and first column of 16-pixel group `g`.
#[inline(always)]
fn group_at(job: &Job, g: usize) -> (usize, usize) {
    (g / job.groups_per_row, (g % job.groups_per_row) * ROWS)
}

/// Block `blk` (groups 2·blk and 2·blk + 1, or the last group alone) by channel pair `p`.
#[inline(always)]
unsafe fn block_pair<S: Simd>(s: S, job: &Job, blk: usize, p: usize, c: &mut CTiles) {
    let cv = job.conv;
    let g = [2 * blk, (2 * blk + 1).min(job.groups - 1)];
    let mut a = [std::ptr::null::<u16>(); 2];
    for i in 0..2 {
        let (oy, ox) = group_at(job, g[i]);
        a[i] = job.xb.get().add((oy * job.wb + ox) * cv.cin_p);
    }
    let b = (cv.b.as_ptr() as *const u16).add(p * cv.steps * 2 * TILE_U16);
    match cv.unit {
        #[cfg(target_arch = "x86_64")]
        TileUnit::Amx => amx::block(a[0], a[1], job.offs, cv.cin_p * 2, b, c.0.as_mut_ptr()),
        _ => emulated_block(a[0], a[1], job.offs, cv.cin_p, b, &mut c.0),
    }
    let groups = if g[1] == g[0] { 1 } else { 2 };
    for (i, &gi) in g[..groups].iter().enumerate() {
        let (oy, ox) = group_at(job, gi);
        let valid = (job.yl.w - ox).min(ROWS);
        for t in 0..2 {
            let n0 = p * 2 * NT + t * NT;
            if n0 < cv.cout {
                let tile = c.0.as_ptr().add((2 * i + t) * TILE_FLOATS);
                store_tile(s, job, tile, oy, ox, valid, n0, (cv.cout - n0).min(NT));
            }
        }
    }
}

/// The four accumulator tiles as stored, aligned like the tile rows.
#[repr(C, align(64))]
struct CTiles([f32; 4 * TILE_FLOATS]);

/// The epilogue of one 16x16 accumulator tile: rows `0..valid` are pixels `ox..` of output row
/// `oy`, columns `0..cols` channels `n0..`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_tile<S: Simd>(
    s: S,
    job: &Job,
    tile: *const f32,
    oy: usize,
    ox: usize,
    valid: usize,
    n0: usize,
    cols: usize,
) {
    let cv = job.conv;
    let at = |p: SendPtr<f32>, rl: Option<Layout>| match rl {
        Some(rl) => p.get().offset(rl.offset(oy as isize, ox as isize)).add(n0) as *const f32,
        None => std::ptr::null(),
    };
    let vec = |v: &Option<AlignedVec>| v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr().add(n0));
    let o = Out {
        c: job.y.get().offset(job.yl.offset(oy as isize, ox as isize)).add(n0),
        c_rs: job.yl.cs as isize,
        res: at(job.res, job.rl),
        res_rs: job.rl.map_or(0, |l| l.cs as isize),
        res2: at(job.res2, job.rl2),
        res2_rs: job.rl2.map_or(0, |l| l.cs as isize),
        cols,
        bias: vec(&cv.bias),
        prelu: vec(&cv.prelu),
        act: job.act,
        res_scale: job.scale,
        res2_scale: job.scale2,
    };
    // The GEMM's epilogue on register tiles of 16 pixels (one pixel at a time for a partial
    // group) by the level's vectors across the 16 channels.
    match S::LANES {
        16 => rows::<S, 1>(s, tile, valid, o),
        8 => rows::<S, 2>(s, tile, valid, o),
        _ => rows::<S, 4>(s, tile, valid, o),
    }
}

#[inline(always)]
unsafe fn rows<S: Simd, const NV: usize>(s: S, tile: *const f32, valid: usize, mut o: Out) {
    // Plain loops with constant bounds, no closures: a closure would not be compiled with the
    // caller's target features, and every vector load in it would become a call.
    if valid == ROWS {
        let mut acc = [[s.zero(); NV]; ROWS];
        for (r, row) in acc.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = s.load(tile.add(r * NT + j * S::LANES));
            }
        }
        epilogue::<S, ROWS, NV>(s, &acc, &o);
        return;
    }
    for r in 0..valid {
        let mut acc = [[s.zero(); NV]; 1];
        for (j, v) in acc[0].iter_mut().enumerate() {
            *v = s.load(tile.add(r * NT + j * S::LANES));
        }
        epilogue::<S, 1, NV>(s, &acc, &o);
        o.advance(1);
    }
}

/// [`amx::block`] in plain Rust: per output, the products of each K pair added odd element first,
/// then even, as the instruction's definition orders them (the products of two bf16 are exact in
/// fp32, so only the order of the sums matters).
unsafe fn emulated_block(
    a0: *const u16,
    a1: *const u16,
    offs: &[isize],
    a_pixel: usize,
    b: *const u16,
    c: &mut [f32; 4 * TILE_FLOATS],
) {
    c.fill(0.0);
    for (s, &o) in offs.iter().enumerate() {
        for (i, a) in [a0, a1].into_iter().enumerate() {
            for t in 0..2 {
                let bt = b.add((2 * s + t) * TILE_U16);
                let ct = &mut c[(2 * i + t) * TILE_FLOATS..][..TILE_FLOATS];
                for m in 0..ROWS {
                    let ar = a.offset(o).add(m * a_pixel);
                    for kp in 0..ROWS {
                        let (a_even, a_odd) = (from_bf16(*ar.add(2 * kp)), from_bf16(*ar.add(2 * kp + 1)));
                        for n in 0..NT {
                            let acc = &mut ct[m * NT + n];
                            *acc += a_odd * from_bf16(*bt.add(kp * KC + 2 * n + 1));
                            *acc += a_even * from_bf16(*bt.add(kp * KC + 2 * n));
                        }
                    }
                }
            }
        }
    }
}

/// One row of the converted input: `pixels` pixels of `cin` floats (`xs` apart) to `cin_p` bf16
/// each.
unsafe fn convert(
    unit: TileUnit,
    src: *const f32,
    xs: usize,
    cin: usize,
    pixels: usize,
    dst: *mut u16,
    cin_p: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if unit == TileUnit::Amx {
        amx::convert_pixels(src, xs, cin, pixels, dst, cin_p);
        return;
    }
    let _ = unit;
    convert_scalar(src, xs, cin, pixels, dst, cin_p);
}

unsafe fn convert_scalar(src: *const f32, xs: usize, cin: usize, pixels: usize, dst: *mut u16, cin_p: usize) {
    for p in 0..pixels {
        for c in 0..cin_p {
            *dst.add(p * cin_p + c) = if c < cin { to_bf16(*src.add(p * xs + c)) } else { 0 };
        }
    }
}

/// Converted-input buffers kept between layers (a layer's copy is megabytes: fresh allocations
/// would fault their pages in every time).
static BUFFERS: Mutex<Vec<Vec<Line>>> = Mutex::new(Vec::new());

fn take_buffer(lines: usize) -> Vec<Line> {
    let mut v = BUFFERS.lock().map(|mut b| b.pop().unwrap_or_default()).unwrap_or_default();
    if v.len() < lines {
        v = vec![ZERO_LINE; lines];
    }
    v
}

fn give_back(v: Vec<Line>) {
    if let Ok(mut b) = BUFFERS.lock() {
        if b.len() < 4 {
            b.push(v);
        }
    }
}

#[cfg(test)]
mod tests;
