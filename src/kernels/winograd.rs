//! Winograd convolution for 3x3, stride-1, pad-1 layers, in two tile sizes: F(4x4, 3x3) and
//! F(6x6, 3x3). Each m x m output tile is `Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A` over an n x n input tile
//! (n = m + 2), so the 9·Cin·Cout multiply-adds per output pixel become n²·Cin·Cout per m²
//! pixels: 36/16 = 2.25 per pixel for F(4x4) (4x fewer), 64/36 = 1.78 for F(6x6) (5.1x fewer),
//! done as n² GEMMs of `[tiles x Cin]·[Cin x Cout]` on the same packed-GEMM microkernels, with the
//! input and output transforms vectorised across channels (NHWC keeps channels contiguous).
//!
//! The interpolation points are 0, ±1, ±2 (and ±1/2 for F(6x6)) and ∞; F(6x6)'s larger
//! transform coefficients cost precision (about 3x F(4x4)'s fp32 error, measured in the tests),
//! which is why the tile size is a choice (see [`WinogradConv::new`]).
//!
//! The tile grid is anchored at output pixel (0, 0) of the layer, so a pixel's arithmetic depends
//! only on its position modulo m: images tiled on an m-aligned grid give bit-identical results.
//! Bias, activation and residual are applied in the output transform.

use super::gemm::{run_line, Activation, Epilogue, KLayout, Line, Ops, PackedB, SendPtr, Shape};
use super::simd::Simd;
use crate::cpu::CpuLevel;
use crate::tensor::{AlignedVec, Layout};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Bytes that a block's transformed input and GEMM output may take: the 36 blocks are written,
/// multiplied and read back while they stay in L2 (512 KiB to 2 MiB per core on current x86
/// and ARM cores, shared with the weights streaming through).
const BLOCK_BYTES: usize = 384 << 10;

/// Most tiles per block: two 6-row microkernel blocks on AVX2 and NEON, one 12-row block on
/// AVX-512, so no GEMM ends in a short tail block. Measured on Zen 3 (1 thread, 320x180,
/// interleaved runs): 12 tiles against the previous 8-10 took 128->64 from 50 to 44 ms and
/// 64->144 from 52 to 50 ms, 64->64 unchanged; 16 and 24 were slower again.
const MAX_TILES: usize = 12;

/// Floats between one tile's transformed data and the next, past the n² vectors themselves. A
/// GEMM row is one tile's data at one point ξ, so without the gap the rows a microkernel reads
/// (and the rows it writes) lie n²·C floats apart, 16 KiB for F(6x6) at 64 channels, all in one
/// L1 set. Measured with rdtsc around the GEMMs of a 64->64 F(6x6) layer at 320x180 (alternated
/// per rep, one thread): 30.3 -> 28.7 and 30.7 -> 28.5 Mcycles per layer.
const TILE_GAP: usize = 16;

/// Fewest input and output channels for which [`WinogradConv::new`] picks F(6x6, 3x3).
pub const F6_MIN_CHANNELS: usize = 32;

/// `G` of F(4x4, 3x3): weights -> 6x6 transformed weights.
const G4: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `G` of F(6x6, 3x3) for the points 0, 1, -1, 2, -2, 1/2, -1/2, ∞ (the order of [`bt6`]'s
/// outputs): row j is `(1, p, p²) / Π(p - q)` over the other finite points q.
const G6: [[f64; 3]; 8] = [
    [1.0, 0.0, 0.0],
    [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
    [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
    [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0],
    [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0],
    [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0],
    [32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0],
    [0.0, 0.0, 1.0],
];

/// The finite points of F(6x6, 3x3) and F(4x4, 5x5), in [`G6`]'s row order (∞ is the last row).
const POINTS8: [f64; 7] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5];

/// Tile sizes this module implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WinogradTile {
    /// F(4x4, 3x3).
    F4,
    /// F(6x6, 3x3).
    F6,
    /// F(4x4, 5x5): the 8x8 input tiles and points of F(6x6, 3x3), so the same input transform.
    F4K5,
}

impl WinogradTile {
    /// Output pixels per tile side.
    pub fn m(self) -> usize {
        match self {
            WinogradTile::F4 | WinogradTile::F4K5 => 4,
            WinogradTile::F6 => 6,
        }
    }

    /// Kernel side.
    pub fn r(self) -> usize {
        match self {
            WinogradTile::F4 | WinogradTile::F6 => 3,
            WinogradTile::F4K5 => 5,
        }
    }

    /// Input pixels per tile side.
    pub fn n(self) -> usize {
        self.m() + self.r() - 1
    }

    /// `G` (weights -> transformed weights), n rows of r.
    fn g(self) -> Vec<Vec<f64>> {
        match self {
            WinogradTile::F4 => G4.iter().map(|r| r.to_vec()).collect(),
            WinogradTile::F6 => G6.iter().map(|r| r.to_vec()).collect(),
            // Row j is (1, p, .., p⁴) times the same per-point factor as F(6x6)'s (its first
            // column), which pairs with the shared Bᵀ; ∞ picks the last tap.
            WinogradTile::F4K5 => POINTS8
                .iter()
                .zip(&G6)
                .map(|(&p, g6)| (0..5).map(|k| g6[0] * p.powi(k)).collect())
                .chain(std::iter::once(vec![0.0, 0.0, 0.0, 0.0, 1.0]))
                .collect(),
        }
    }
}

/// A 3x3 convolution prepared for the Winograd path.
#[derive(Clone, Debug)]
pub struct WinogradConv {
    cin: usize,
    cout: usize,
    level: CpuLevel,
    tile: WinogradTile,
    /// One packed `[Cin x Cout]` matrix per transform point ξ (n² of them).
    u: Vec<PackedB>,
    bias: Option<AlignedVec>,
    prelu: Option<AlignedVec>,
    /// Columns of the GEMM output rows (Cout rounded up to whole vectors).
    cout_pad: usize,
    /// Tiles per block (see [`BLOCK_BYTES`]).
    tile_block: usize,
}

impl WinogradConv {
    /// `weight` is OIHW [cout, cin, k, k] with k 3 or 5; `prelu` slopes (if any) are used when
    /// the layer runs with [`Activation::PRelu`]. A 5x5 kernel runs as [`WinogradTile::F4K5`];
    /// a 3x3 one as [`WinogradTile::F6`] where both sides have at least [`F6_MIN_CHANNELS`]
    /// channels (the GEMMs, which it shrinks by a fifth, dominate there), else F4.
    pub fn new(
        level: CpuLevel,
        cin: usize,
        cout: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        prelu: Option<&[f32]>,
    ) -> Self {
        let tile = if weight.len() == cout * cin * 25 {
            WinogradTile::F4K5
        } else if cin.min(cout) >= F6_MIN_CHANNELS {
            WinogradTile::F6
        } else {
            WinogradTile::F4
        };
        Self::with_tile(level, tile, cin, cout, weight, bias, prelu)
    }

    /// As [`WinogradConv::new`] with the tile size given.
    pub fn with_tile(
        level: CpuLevel,
        tile: WinogradTile,
        cin: usize,
        cout: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        prelu: Option<&[f32]>,
    ) -> Self {
        let (n, r, gm) = (tile.n(), tile.r(), tile.g());
        let taps = r * r;
        assert_eq!(weight.len(), cout * cin * taps);
        let nn = n * n;
        // U[ξ][ci][co] = (G g Gᵀ)[ξ] for the r x r kernel g of (co, ci), in f64 then rounded; one
        // task per row i of points (ξ = i·n + j), each packing its n matrices, over the weights
        // transposed to [ci][tap][co] so the inner loops run along co. Loading RRDBNet x4plus
        // took 1.57 s (a 16x16 image, two threads, wall) with this done on one thread, point by
        // point and channel pair by channel pair.
        let mut wt = vec![0.0f32; cout * cin * taps];
        for co in 0..cout {
            for ci in 0..cin {
                for tap in 0..taps {
                    wt[(ci * taps + tap) * cout + co] = weight[(co * cin + ci) * taps + tap];
                }
            }
        }
        let u: Vec<PackedB> = (0..n)
            .into_par_iter()
            .flat_map_iter(|i| {
                let mut rows = vec![0.0f32; n * cin * cout]; // [j][ci][co]
                let mut t = vec![[0.0f64; 5]; cout]; // (G g)[i][column] per co, r used
                for ci in 0..cin {
                    let wk = &wt[ci * taps * cout..][..taps * cout];
                    for (co, tc) in t.iter_mut().enumerate() {
                        for (l, v) in tc.iter_mut().enumerate().take(r) {
                            *v = (0..r).map(|k| gm[i][k] * wk[(k * r + l) * cout + co] as f64).sum();
                        }
                    }
                    for (j, g) in gm.iter().enumerate().take(n) {
                        let out = &mut rows[(j * cin + ci) * cout..][..cout];
                        for (o, tc) in out.iter_mut().zip(&t) {
                            *o = (0..r).map(|l| tc[l] * g[l]).sum::<f64>() as f32;
                        }
                    }
                }
                (0..n)
                    .map(|j| PackedB::from_rows(level, cin, cout, &rows[j * cin * cout..][..cin * cout]))
                    .collect::<Vec<_>>()
            })
            .collect();
        let lanes = Shape::of(level).lanes;
        let cout_pad = cout.div_ceil(lanes) * lanes;
        let padded = |v: &[f32]| {
            let mut a = AlignedVec::zeros(cout_pad.max(u[0].padded_n()));
            a.as_mut_slice()[..v.len()].copy_from_slice(v);
            a
        };
        // Whole microkernel row blocks: F(6x6)'s larger tiles leave budgets of 7-8 tiles, and a
        // 1-2 row tail GEMM per point cost more than the smaller block (128->64 on one thread:
        // 35 -> 31 ms at 6 tiles instead of 8).
        let mr = Shape::of(level).mr;
        let tile_block = (BLOCK_BYTES / (nn * 4 * (cin + cout_pad))).clamp(mr, MAX_TILES) / mr * mr;
        WinogradConv {
            cin,
            cout,
            level,
            tile,
            bias: bias.map(padded),
            prelu: prelu.map(padded),
            u,
            cout_pad,
            tile_block,
        }
    }

    pub fn tile(&self) -> WinogradTile {
        self.tile
    }

    pub fn has_prelu(&self) -> bool {
        self.prelu.is_some()
    }

    pub fn bytes(&self) -> usize {
        self.u.iter().map(|p| p.bytes()).sum()
    }

    /// Safe wrapper over owned tensors (`x` needs a border of at least 1).
    pub fn forward_into(&self, x: &crate::tensor::Tensor, y: &mut crate::tensor::Tensor, act: Activation) {
        let yl = y.layout;
        // SAFETY: distinct owned tensors of exactly their layouts' lengths; run_raw checks the
        // geometry.
        unsafe { self.run_raw(x.data.as_ptr(), &x.layout, y.data.as_mut_ptr(), &yl, act, None, None, 1) }
    }

    /// As [`super::conv::Conv2d::run_raw`] for a 3x3, stride-1, pad-1 convolution.
    ///
    /// # Safety
    /// `x` valid for `xl.len()` reads with `xl.pad >= 1`, `y` for `yl.len()` writes, not
    /// overlapping `x`; `res` and `res2` (which may alias `y` with the same layout) valid for
    /// reads. `res2` needs `res`: `y = res2 + s2·(res + s·act(conv(x) + bias))`.
    ///
    /// With `shuffle` r > 1, `y` is `pixel_shuffle(act(conv(x) + bias), r)` with the outputs
    /// in [`ShuffleOrder::Grouped`](super::shuffle::ShuffleOrder::Grouped) (r² blocks of
    /// `cout / r²` channels, a whole number of vectors each), stored straight from the output
    /// transform: the conv-sized map is never written. No residuals then.
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
        shuffle: usize,
    ) {
        let pad = (self.tile.r() - 1) / 2;
        assert!(xl.pad >= pad, "Winograd input needs a border of {pad}");
        let r = shuffle;
        assert!(r >= 1 && self.cout.is_multiple_of(r * r));
        assert_eq!((xl.c, yl.c * r * r), (self.cin, self.cout));
        assert_eq!((xl.h * r, xl.w * r), (yl.h, yl.w), "same-size convolution");
        if r > 1 {
            assert!(res.is_none(), "no residual with a fused shuffle");
            assert!(yl.c.is_multiple_of(Shape::of(self.level).lanes), "shuffle blocks of whole vectors");
        }
        assert!(act != Activation::PRelu || self.prelu.is_some(), "PReLU needs slopes");
        for (_, rl, _) in res.iter().chain(res2.iter()) {
            assert_eq!((rl.h, rl.w), (yl.h, yl.w));
        }
        assert!(res2.is_none() || res.is_some(), "a second residual needs a first one");
        let mt = self.tile.m();
        let (th, tw) = (xl.h.div_ceil(mt), xl.w.div_ceil(mt));
        let (xp, yp) = (SendPtr(x as *mut f32), SendPtr(y));
        let rp = SendPtr(res.map_or(std::ptr::null(), |r| r.0) as *mut f32);
        let rl = res.map(|r| *r.1);
        let scale = res.map_or(1.0, |r| r.2);
        let rp2 = SendPtr(res2.map_or(std::ptr::null(), |r| r.0) as *mut f32);
        let rl2 = res2.map(|r| *r.1);
        let scale2 = res2.map_or(1.0, |r| r.2);
        let (xl, yl) = (*xl, *yl);
        let tb = self.tile_block;
        let blocks_per_row = tw.div_ceil(tb);
        let nn = self.tile.n() * self.tile.n();
        let (v_len, m_len) = ((nn * self.cin + TILE_GAP) * tb, (nn * self.cout_pad + TILE_GAP) * tb);
        // 5x5 layers run in functions of their own, so that the 3x3 ones compile as before.
        let k5 = self.tile == WinogradTile::F4K5;
        // The n² GEMMs' operands, made once per layer rather than once per block.
        let kl = KLayout::dense(self.cin);
        let ops: Vec<Ops> = self.u.iter().map(|u| Ops::new(u, &kl, &Epilogue::NONE)).collect();
        let ops = &ops[..];
        (0..th * blocks_per_row).into_par_iter().for_each(|job| {
            SCRATCH.with_borrow_mut(|(v, m)| {
                // Per-thread buffers kept between layers: rayon splits the jobs into many
                // pieces, and zeroed allocations per piece showed up in profiles.
                if v.len() < v_len {
                    *v = AlignedVec::zeros(v_len);
                }
                if m.len() < m_len {
                    *m = AlignedVec::zeros(m_len);
                }
                let (xp, yp, rp, rp2) = (xp, yp, rp, rp2);
                let ty = job / blocks_per_row;
                let tx0 = (job % blocks_per_row) * tb;
                let n = tb.min(tw - tx0);
                let blk = Block {
                    ty,
                    tx0,
                    n,
                    xl,
                    yl,
                    act,
                    rl,
                    scale,
                    r: rp.0,
                    rl2,
                    scale2,
                    r2: rp2.0,
                    shuffle,
                    ops,
                };
                match self.level {
                    #[cfg(target_arch = "x86_64")]
                    CpuLevel::Avx512 if k5 => block_avx512::<5>(self, &blk, xp.0, yp.0, v, m),
                    #[cfg(target_arch = "x86_64")]
                    CpuLevel::Avx512 => block_avx512::<3>(self, &blk, xp.0, yp.0, v, m),
                    #[cfg(target_arch = "x86_64")]
                    CpuLevel::Avx2 if k5 => block_avx2::<5>(self, &blk, xp.0, yp.0, v, m),
                    #[cfg(target_arch = "x86_64")]
                    CpuLevel::Avx2 => block_avx2::<3>(self, &blk, xp.0, yp.0, v, m),
                    #[cfg(target_arch = "aarch64")]
                    CpuLevel::Neon if k5 => {
                        block::<_, 5>(super::simd::neon::Neon::new(), self, &blk, xp.0, yp.0, v, m)
                    }
                    #[cfg(target_arch = "aarch64")]
                    CpuLevel::Neon => {
                        block::<_, 3>(super::simd::neon::Neon::new(), self, &blk, xp.0, yp.0, v, m)
                    }
                    _ if k5 => block_portable::<5>(self, &blk, xp.0, yp.0, v, m),
                    _ => block_portable::<3>(self, &blk, xp.0, yp.0, v, m),
                }
            })
        });
    }
}

thread_local! {
    /// Transformed input and GEMM output of one block, per worker thread.
    static SCRATCH: std::cell::RefCell<(AlignedVec, AlignedVec)> =
        const { std::cell::RefCell::new((AlignedVec::new_empty(), AlignedVec::new_empty())) };
}

/// A run of `n` tiles in tile row `ty` starting at tile column `tx0`.
struct Block<'a> {
    ty: usize,
    tx0: usize,
    n: usize,
    xl: Layout,
    yl: Layout,
    act: Activation,
    r: *const f32,
    rl: Option<Layout>,
    scale: f32,
    r2: *const f32,
    rl2: Option<Layout>,
    scale2: f32,
    /// Pixel-shuffle factor of the output (1: none).
    shuffle: usize,
    /// The GEMM of each of the n² points.
    ops: &'a [Ops<'a>],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2<const R: usize>(
    w: &WinogradConv,
    b: &Block,
    x: *mut f32,
    y: *mut f32,
    v: &mut AlignedVec,
    m: &mut AlignedVec,
) {
    use super::simd::avx2::Avx2;
    block::<_, R>(Avx2::new_unchecked(), w, b, x, y, v, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn block_avx512<const R: usize>(
    w: &WinogradConv,
    b: &Block,
    x: *mut f32,
    y: *mut f32,
    v: &mut AlignedVec,
    m: &mut AlignedVec,
) {
    use super::simd::avx512::Avx512;
    block::<_, R>(Avx512::new_unchecked(), w, b, x, y, v, m)
}

unsafe fn block_portable<const R: usize>(
    w: &WinogradConv,
    b: &Block,
    x: *mut f32,
    y: *mut f32,
    v: &mut AlignedVec,
    m: &mut AlignedVec,
) {
    use super::simd::portable::Portable;
    block::<_, R>(Portable, w, b, x, y, v, m)
}

/// `Bᵀ d B` of F(4x4) along one axis: six values in, six out.
#[inline(always)]
fn bt4<S: Simd>(s: S, d: [S::V; 8]) -> [S::V; 8] {
    let (c4, c5, c2) = (s.splat(4.0), s.splat(-5.0), s.splat(2.0));
    let neg = |a: S::V| s.mul(a, s.splat(-1.0));
    // Shared terms: (d4 - 4 d2), (d3 - 4 d1), (d4 - d2), (d3 - d1).
    let t0 = s.fma(s.splat(-4.0), d[2], d[4]);
    let t1 = s.fma(s.splat(-4.0), d[1], d[3]);
    let t2 = s.add(d[4], neg(d[2]));
    let t3 = s.add(d[3], neg(d[1]));
    [
        s.add(s.fma(c4, d[0], s.mul(c5, d[2])), d[4]),
        s.add(t0, t1),
        s.add(t0, neg(t1)),
        s.fma(c2, t3, t2),
        s.fma(s.splat(-2.0), t3, t2),
        s.add(s.fma(c4, d[1], s.mul(c5, d[3])), d[5]),
        s.zero(),
        s.zero(),
    ]
}

/// `Bᵀ d B` of F(6x6) along one axis: eight values in, eight out (points 0, 1, -1, 2, -2,
/// 1/2, -1/2, ∞). Outputs 1-6 come in ± pairs of an even and an odd part.
#[inline(always)]
fn bt6<S: Simd>(s: S, d: [S::V; 8]) -> [S::V; 8] {
    let c = |x: f32| s.splat(x);
    let sub = |a: S::V, b: S::V| s.add(a, s.mul(b, c(-1.0)));
    let e1 = s.fma(c(-4.25), d[4], s.add(d[2], d[6]));
    let o1 = s.fma(c(-4.25), d[3], s.add(d[1], d[5]));
    let e2 = s.fma(c(-1.25), d[4], s.fma(c(0.25), d[2], d[6]));
    let o2 = s.fma(c(2.0), d[5], s.fma(c(-2.5), d[3], s.mul(c(0.5), d[1])));
    let e3 = s.fma(c(-5.0), d[4], s.fma(c(4.0), d[2], d[6]));
    let o3 = s.fma(c(0.5), d[5], s.fma(c(-2.5), d[3], s.mul(c(2.0), d[1])));
    [
        s.fma(c(5.25), sub(d[4], d[2]), sub(d[0], d[6])),
        s.add(e1, o1),
        sub(e1, o1),
        s.add(e2, o2),
        sub(e2, o2),
        s.add(e3, o3),
        sub(e3, o3),
        s.fma(c(5.25), sub(d[3], d[5]), sub(d[7], d[1])),
    ]
}

/// `Aᵀ m A` of F(4x4) along one axis: six values in, four out.
#[inline(always)]
fn at4<S: Simd>(s: S, m: [S::V; 8]) -> [S::V; 8] {
    let neg = |a: S::V| s.mul(a, s.splat(-1.0));
    let a = s.add(m[1], m[2]);
    let b = s.add(m[1], neg(m[2]));
    let c = s.add(m[3], m[4]);
    let d = s.add(m[3], neg(m[4]));
    let z = s.zero();
    [
        s.add(s.add(m[0], a), c),
        s.fma(s.splat(2.0), d, b),
        s.fma(s.splat(4.0), c, a),
        s.add(s.fma(s.splat(8.0), d, b), m[5]),
        z,
        z,
        z,
        z,
    ]
}

/// `Aᵀ m A` of F(6x6) along one axis: eight values in, six out.
#[inline(always)]
fn at6<S: Simd>(s: S, m: [S::V; 8]) -> [S::V; 8] {
    let c = |x: f32| s.splat(x);
    let sub = |a: S::V, b: S::V| s.add(a, s.mul(b, c(-1.0)));
    let (a1, b1) = (s.add(m[1], m[2]), sub(m[1], m[2]));
    let (a2, b2) = (s.add(m[3], m[4]), sub(m[3], m[4]));
    let (a3, b3) = (s.add(m[5], m[6]), sub(m[5], m[6]));
    let z = s.zero();
    [
        s.add(s.add(m[0], a1), s.add(a2, a3)),
        s.fma(c(0.5), b3, s.fma(c(2.0), b2, b1)),
        s.fma(c(0.25), a3, s.fma(c(4.0), a2, a1)),
        s.fma(c(0.125), b3, s.fma(c(8.0), b2, b1)),
        s.fma(c(0.0625), a3, s.fma(c(16.0), a2, a1)),
        s.add(s.fma(c(0.03125), b3, s.fma(c(32.0), b2, b1)), m[7]),
        z,
        z,
    ]
}

/// `Bᵀ d B` along one axis for input tiles of side `M + R - 1` (6 or 8 points).
/// `Aᵀ m A` of F(4x4, 5x5) along one axis: eight values in (F(6x6)'s points), four out; the
/// first four rows of [`at6`]'s, with ∞ in the last.
#[inline(always)]
fn at45<S: Simd>(s: S, m: [S::V; 8]) -> [S::V; 8] {
    let c = |x: f32| s.splat(x);
    let (a1, b1) = (s.add(m[1], m[2]), s.sub(m[1], m[2]));
    let (a2, b2) = (s.add(m[3], m[4]), s.sub(m[3], m[4]));
    let (a3, b3) = (s.add(m[5], m[6]), s.sub(m[5], m[6]));
    let z = s.zero();
    [
        s.add(s.add(m[0], a1), s.add(a2, a3)),
        s.fma(c(0.5), b3, s.fma(c(2.0), b2, b1)),
        s.fma(c(0.25), a3, s.fma(c(4.0), a2, a1)),
        s.add(s.fma(c(0.125), b3, s.fma(c(8.0), b2, b1)), m[7]),
        z,
        z,
        z,
        z,
    ]
}

#[inline(always)]
fn bt<S: Simd, const M: usize, const R: usize>(s: S, d: [S::V; 8]) -> [S::V; 8] {
    if M + R - 1 == 6 {
        bt4(s, d)
    } else {
        bt6(s, d)
    }
}

/// `Aᵀ m A` along one axis for `M` outputs of a kernel of side `R`.
#[inline(always)]
fn at<S: Simd, const M: usize, const R: usize>(s: S, m: [S::V; 8]) -> [S::V; 8] {
    match (M, R) {
        (4, 3) => at4(s, m),
        (4, _) => at45(s, m),
        _ => at6(s, m),
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block<S: Simd, const R: usize>(
    s: S,
    w: &WinogradConv,
    b: &Block,
    x: *const f32,
    y: *mut f32,
    v: &mut AlignedVec,
    m: &mut AlignedVec,
) {
    debug_assert_eq!(w.tile.r(), R);
    match (R, w.tile) {
        (5, _) => block_m::<S, 4, 5>(s, w, b, x, y, v, m),
        (_, WinogradTile::F6) => block_m::<S, 6, 3>(s, w, b, x, y, v, m),
        _ => block_m::<S, 4, 3>(s, w, b, x, y, v, m),
    }
}

/// One block of tiles with output tile side `M` and kernel side `R` (input side `M + R - 1`).
/// The transforms work on 8-vector arrays whatever the sizes, so that one body serves all; the
/// loops have constant bounds and the unused entries vanish.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block_m<S: Simd, const M: usize, const R: usize>(
    s: S,
    w: &WinogradConv,
    b: &Block,
    x: *const f32,
    y: *mut f32,
    v: &mut AlignedVec,
    m: &mut AlignedVec,
) {
    let n = M + R - 1;
    let pad = (R - 1) / 2;
    let nn = n * n;
    let l = S::LANES;
    let (cin, cout, cp) = (w.cin, w.cout, w.cout_pad);
    let nt = b.n;
    let vb = v.as_mut_ptr();
    let mb = m.as_mut_ptr();
    let (xl, yl) = (&b.xl, &b.yl);
    let zero = s.zero();
    // Input transform: V[t][ξ][c], tile-major so that a tile's n² transformed vectors land in
    // one contiguous run instead of n² lines a block apart; the GEMMs read rows `vts` apart.
    let (vts, mts) = (nn * cin + TILE_GAP, nn * cp + TILE_GAP);
    let (rs, cs) = (xl.row_stride(), xl.cs);
    let oy = (b.ty * M) as isize - pad as isize;
    // Only the `pad`-pixel ring of the convolution's own zero padding is read: what lies further
    // out (a wider border, or real pixels when `xl` is a view of a larger map) must not change
    // the result, even through rounding.
    let rows_ok: [bool; 8] = std::array::from_fn(|i| i < n && oy + (i as isize) < (xl.h + pad) as isize);
    for t in 0..nt {
        let ox = ((b.tx0 + t) * M) as isize - pad as isize;
        let cols_ok: [bool; 8] = std::array::from_fn(|j| j < n && ox + (j as isize) < (xl.w + pad) as isize);
        // Pixel (oy, ox) is at worst the ring's corner, inside the buffer.
        let base = x.offset(xl.offset(oy, ox));
        let mut c0 = 0;
        while c0 < cin {
            let cn = (cin - c0).min(l);
            // Columns first (Bᵀ d, each column loaded straight into registers), then rows.
            // Left uninitialised: zeroing the 2 KiB array was a memset per tile and channel
            // vector (3% of EDSR); the row pass reads only the entries the column pass wrote.
            let mut t1 = [[MaybeUninit::<S::V>::uninit(); 8]; 8];
            for j in 0..n {
                let mut col = [zero; 8];
                if cols_ok[j] {
                    for (i, v) in col.iter_mut().enumerate().take(n) {
                        if rows_ok[i] {
                            let p = base.add(i * rs + j * cs + c0);
                            *v = if cn == l { s.load(p) } else { s.load_part(p, cn) };
                        }
                    }
                }
                let out = bt::<S, M, R>(s, col);
                for i in 0..n {
                    t1[i][j].write(out[i]);
                }
            }
            for (i, row) in t1.iter().enumerate().take(n) {
                let mut r = [zero; 8];
                for j in 0..n {
                    // SAFETY: the column pass wrote t1[i][j] for every i, j < n.
                    r[j] = unsafe { row[j].assume_init() };
                }
                let out = bt::<S, M, R>(s, r);
                for (j, &o) in out.iter().enumerate().take(n) {
                    let dst = vb.add(t * vts + (i * n + j) * cin + c0);
                    if cn == l {
                        s.store(dst, o);
                    } else {
                        s.store_part(dst, o, cn);
                    }
                }
            }
            c0 += l;
        }
    }
    // n² GEMMs: M[t][ξ][co] = V[t][ξ][:] · U[ξ] (rows `mts` apart).
    for (xi, ops) in b.ops.iter().enumerate() {
        let line = Line {
            m: nt,
            a: vb.add(xi * cin),
            a_rs: vts as isize,
            c: mb.add(xi * cp),
            c_rs: mts as isize,
            res: std::ptr::null(),
            res_rs: 0,
            res2: std::ptr::null(),
            res2_rs: 0,
        };
        run_line(w.level, &line, ops, 0..ops.b.panels());
    }
    // Output transform, epilogue, store.
    let slope = match b.act {
        // `act(v) = slope·min(v, 0) + max(v, 0)`, exact for each: one branch-free line per
        // pixel instead of a dispatch on the activation (and on the bias, the residuals and the
        // shuffle) per pixel, which took a fifth of the output transform's time.
        Activation::None => s.splat(1.0),
        Activation::Relu => zero,
        Activation::LeakyRelu(a) => s.splat(a),
        Activation::PRelu => zero, // per channel, below
    };
    let scale = s.splat(b.scale);
    let scale2 = s.splat(b.scale2);
    for t in 0..nt {
        let (oy0, ox0) = (b.ty * M, (b.tx0 + t) * M);
        let cols = M.min(xl.w - ox0);
        let mut c0 = 0;
        while c0 < cout {
            let cn = (cout - c0).min(l);
            // Columns first (Aᵀ m), each column loaded straight into registers, then rows.
            let mut t1 = [[MaybeUninit::<S::V>::uninit(); 8]; 8];
            for j in 0..n {
                let mut col = [zero; 8];
                for (i, v) in col.iter_mut().enumerate().take(n) {
                    *v = s.load(mb.add(t * mts + (i * n + j) * cp + c0));
                }
                let out = at::<S, M, R>(s, col);
                for i in 0..M {
                    t1[i][j].write(out[i]);
                }
            }
            let bias = w.bias.as_ref().map_or(zero, |bv| s.load(bv.as_ptr().add(c0)));
            let slope = match (b.act, &w.prelu) {
                (Activation::PRelu, Some(pv)) => s.load(pv.as_ptr().add(c0)),
                (Activation::PRelu, None) => unreachable!("PReLU slopes checked in run_raw"),
                _ => slope,
            };
            for (i, row) in t1.iter().enumerate().take(M) {
                let yy = oy0 + i;
                if yy >= xl.h {
                    break;
                }
                let mut r = [zero; 8];
                for j in 0..n {
                    // SAFETY: the column pass wrote t1[i][j] for every i < M, j < n.
                    r[j] = unsafe { row[j].assume_init() };
                }
                let out = at::<S, M, R>(s, r);
                // This row's first pixel in the output and residuals, and their pixel strides.
                let (dp, dcs) = if b.shuffle == 1 {
                    (y.offset(yl.offset(yy as isize, ox0 as isize)).add(c0), yl.cs)
                } else {
                    // Grouped order: channel c0 is channel c0 % C of sub-pixel c0 / C.
                    let (r, sub) = (b.shuffle, c0 / yl.c);
                    let (sy, sx) = (yy * r + sub / r, ox0 * r + sub % r);
                    (y.offset(yl.offset(sy as isize, sx as isize)).add(c0 % yl.c), r * yl.cs)
                };
                let at_row = |p: *const f32, rl: &Option<Layout>| match rl {
                    Some(rl) => (p.offset(rl.offset(yy as isize, ox0 as isize)).add(c0), rl.cs),
                    None => (std::ptr::null(), 0),
                };
                let (rp, rcs) = at_row(b.r, &b.rl);
                let (rp2, rcs2) = at_row(b.r2, &b.rl2);
                for (j, &o) in out.iter().enumerate().take(cols) {
                    let v = s.add(o, bias);
                    let mut val = s.fma(slope, s.min(v, zero), s.max(v, zero));
                    if !rp.is_null() {
                        let p = rp.add(j * rcs);
                        let rv = if cn == l { s.load(p) } else { s.load_part(p, cn) };
                        val = s.fma(scale, val, rv);
                    }
                    if !rp2.is_null() {
                        let p = rp2.add(j * rcs2);
                        let rv = if cn == l { s.load(p) } else { s.load_part(p, cn) };
                        val = s.fma(scale2, val, rv);
                    }
                    let p = dp.add(j * dcs);
                    if cn == l {
                        s.store(p, val);
                    } else {
                        s.store_part(p, val, cn);
                    }
                }
            }
            c0 += l;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{reference, ConvSpec};
    use crate::kernels::testutil::{act_ref, rand_vec};
    use crate::tensor::Tensor;

    fn check(cin: usize, cout: usize, h: usize, w: usize, act: Activation, residual: bool) {
        check_k(3, cin, cout, h, w, act, residual)
    }

    fn check_k(k: usize, cin: usize, cout: usize, h: usize, w: usize, act: Activation, residual: bool) {
        let spec = ConvSpec::same(cin, cout, k);
        let x = rand_vec(h * w * cin, 1, 1.0);
        let wt = rand_vec(cout * cin * k * k, 2, 1.0 / (cin as f32 * (k * k) as f32).sqrt());
        let bias = rand_vec(cout, 3, 0.1);
        let slopes = rand_vec(cout, 4, 0.3);
        let res = rand_vec(h * w * cout, 5, 1.0);
        let conv = reference(&x, h, w, &spec, &wt, Some(&bias));
        let want: Vec<f32> = conv
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let v = act_ref(v, act, slopes[i % cout]);
                if residual {
                    res[i] + 0.5 * v
                } else {
                    v
                }
            })
            .collect();
        let xt = Tensor::from_hwc(h, w, cin, k / 2, &x);
        let rt = Tensor::from_hwc(h, w, cout, 1, &res);
        let tiles: &[WinogradTile] =
            if k == 5 { &[WinogradTile::F4K5] } else { &[WinogradTile::F4, WinogradTile::F6] };
        for (level, &tile) in
            CpuLevel::supported().into_iter().flat_map(|l| tiles.iter().map(move |t| (l, t)))
        {
            let wc = WinogradConv::with_tile(
                level,
                tile,
                cin,
                cout,
                &wt,
                Some(&bias),
                (act == Activation::PRelu).then_some(&slopes[..]),
            );
            let mut yt = Tensor::zeros(h, w, cout, 1);
            let yl = yt.layout;
            // SAFETY: owned tensors of matching geometry; the residual is a separate tensor.
            unsafe {
                wc.run_raw(
                    xt.data.as_ptr(),
                    &xt.layout,
                    yt.data.as_mut_ptr(),
                    &yl,
                    act,
                    residual.then(|| (rt.data.as_ptr(), &rt.layout, 0.5)),
                    None,
                    1,
                )
            };
            let got = yt.to_hwc();
            let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            // F(6x6)'s coefficients (up to 32 and 21/4) cost it about 3x F(4x4)'s rounding error.
            let tol = match tile {
                WinogradTile::F4 => 2e-5,
                WinogradTile::F6 => 6e-5,
                WinogradTile::F4K5 => 6e-5,
            };
            assert!(
                err < tol,
                "{level} {tile:?} {cin}->{cout} {h}x{w} {act:?} res={residual}: max error {err}"
            );
        }
    }

    #[test]
    fn matches_direct_convolution() {
        for (h, w) in [(1, 1), (4, 4), (6, 6), (5, 7), (9, 30), (13, 53)] {
            check(16, 16, h, w, Activation::None, false);
            check(19, 35, h, w, Activation::Relu, true);
            check(24, 8, h, w, Activation::LeakyRelu(0.2), false);
            check(8, 20, h, w, Activation::PRelu, true);
        }
        check(64, 64, 14, 19, Activation::LeakyRelu(0.1), true);
    }

    #[test]
    fn five_by_five_matches_direct_convolution() {
        for (h, w) in [(1, 1), (2, 3), (4, 4), (5, 7), (9, 30), (13, 21)] {
            check_k(5, 16, 16, h, w, Activation::None, false);
            check_k(5, 19, 35, h, w, Activation::Relu, true);
            check_k(5, 8, 20, h, w, Activation::PRelu, true);
        }
        check_k(5, 64, 64, 14, 19, Activation::Relu, false);
    }

    #[test]
    fn tile_size_follows_the_channels() {
        let level = CpuLevel::Portable;
        let tile = |cin: usize, cout: usize| {
            WinogradConv::new(level, cin, cout, &vec![0.0; cin * cout * 9], None, None).tile()
        };
        assert_eq!(tile(64, 64), WinogradTile::F6);
        assert_eq!(tile(64, 3), WinogradTile::F4);
        assert_eq!(tile(16, 64), WinogradTile::F4);
        assert_eq!(
            WinogradConv::new(level, 16, 3, &[0.0; 16 * 3 * 25], None, None).tile(),
            WinogradTile::F4K5
        );
    }

    /// The shuffled store puts every value of the unshuffled run at its pixel-shuffle position,
    /// bit for bit, on every level and tile size (partial tiles included).
    #[test]
    fn fused_shuffle_stores_the_unfused_values() {
        use crate::kernels::shuffle::{run_raw as shuffle, ShuffleOrder};
        let (c, r) = (16, 2);
        for (cin, h, w) in [(8, 7, 13), (32, 5, 9), (32, 1, 1)] {
            let cout = c * r * r;
            let x = Tensor::from_hwc(h, w, cin, 1, &rand_vec(h * w * cin, 1, 1.0));
            let wt = rand_vec(cout * cin * 9, 2, 0.2);
            let bias = rand_vec(cout, 3, 0.1);
            for (level, tile) in CpuLevel::supported()
                .into_iter()
                .flat_map(|l| [WinogradTile::F4, WinogradTile::F6].map(|t| (l, t)))
            {
                let wc = WinogradConv::with_tile(level, tile, cin, cout, &wt, Some(&bias), None);
                let act = Activation::LeakyRelu(0.1);
                let mut plain = Tensor::zeros(h, w, cout, 1);
                let mut want = Tensor::zeros(h * r, w * r, c, 1);
                let mut got = Tensor::zeros(h * r, w * r, c, 1);
                let (pl, wl, gl) = (plain.layout, want.layout, got.layout);
                // SAFETY: owned tensors of matching geometry.
                unsafe {
                    wc.run_raw(x.data.as_ptr(), &x.layout, plain.data.as_mut_ptr(), &pl, act, None, None, 1);
                    shuffle(
                        plain.data.as_ptr(),
                        &pl,
                        None,
                        want.data.as_mut_ptr(),
                        &wl,
                        r,
                        ShuffleOrder::Grouped,
                    );
                    wc.run_raw(x.data.as_ptr(), &x.layout, got.data.as_mut_ptr(), &gl, act, None, None, r);
                }
                let bits = |t: &Tensor| t.data.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{level} {tile:?} {cin}->{cout} {h}x{w}");
            }
        }
    }
}
