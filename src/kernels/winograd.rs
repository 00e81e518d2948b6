//! Winograd F(4x4, 3x3) convolution for 3x3, stride-1, pad-1 layers: each 4x4 output tile is
//! `Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, so the 9·Cin·Cout multiply-adds per output pixel become
//! 36·Cin·Cout per 16 pixels (2.25 per pixel, 4x fewer), done as 36 GEMMs of
//! `[tiles x Cin]·[Cin x Cout]` on the same packed-GEMM microkernels, with the input and output
//! transforms vectorised across channels (NHWC keeps channels contiguous).
//!
//! The tile grid is anchored at output pixel (0, 0) of the layer, so a pixel's arithmetic depends
//! only on its position modulo 4: images tiled on a 4-aligned grid give bit-identical results.
//! Bias, activation and residual are applied in the output transform.

use super::gemm::{run_line, Activation, Epilogue, KLayout, Line, Ops, PackedB, SendPtr, Shape};
use super::simd::Simd;
use crate::cpu::CpuLevel;
use crate::tensor::{AlignedVec, Layout};
use rayon::prelude::*;

/// Bytes that a block's transformed input and GEMM output may take: the 36 blocks are written,
/// multiplied and read back while they stay in L2 (512 KiB to 2 MiB per core on current x86
/// and ARM cores, shared with the weights streaming through).
const BLOCK_BYTES: usize = 384 << 10;

/// Most tiles per block: two 6-row microkernel blocks on AVX2 and NEON, one 12-row block on
/// AVX-512, so no GEMM ends in a short tail block. Measured on Zen 3 (1 thread, 320x180,
/// interleaved runs): 12 tiles against the previous 8-10 took 128->64 from 50 to 44 ms and
/// 64->144 from 52 to 50 ms, 64->64 unchanged; 16 and 24 were slower again.
const MAX_TILES: usize = 12;

/// `G` of F(4x4, 3x3): weights -> 6x6 transformed weights.
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// A 3x3 convolution prepared for the Winograd path.
#[derive(Clone, Debug)]
pub struct WinogradConv {
    cin: usize,
    cout: usize,
    level: CpuLevel,
    /// One packed `[Cin x Cout]` matrix per transform point ξ.
    u: Vec<PackedB>,
    bias: Option<AlignedVec>,
    prelu: Option<AlignedVec>,
    /// Columns of the GEMM output rows (Cout rounded up to whole vectors).
    cout_pad: usize,
    /// Tiles per block (see [`BLOCK_BYTES`]).
    tile_block: usize,
}

impl WinogradConv {
    /// `weight` is OIHW [cout, cin, 3, 3]; `prelu` slopes (if any) are used when the layer runs
    /// with [`Activation::PRelu`].
    pub fn new(
        level: CpuLevel,
        cin: usize,
        cout: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        prelu: Option<&[f32]>,
    ) -> Self {
        assert_eq!(weight.len(), cout * cin * 9);
        // U[ξ][ci][co] = (G g Gᵀ)[ξ] for the 3x3 kernel g of (co, ci), in f64 then rounded.
        let mut u = vec![0.0f32; 36 * cin * cout];
        for co in 0..cout {
            for ci in 0..cin {
                let g = &weight[(co * cin + ci) * 9..][..9];
                let mut t = [[0.0f64; 3]; 6]; // G g
                for (i, ti) in t.iter_mut().enumerate() {
                    for (j, tij) in ti.iter_mut().enumerate() {
                        *tij = (0..3).map(|k| G[i][k] * g[k * 3 + j] as f64).sum();
                    }
                }
                for i in 0..6 {
                    for j in 0..6 {
                        let v: f64 = (0..3).map(|k| t[i][k] * G[j][k]).sum();
                        u[((i * 6 + j) * cin + ci) * cout + co] = v as f32;
                    }
                }
            }
        }
        let u: Vec<PackedB> =
            (0..36).map(|x| PackedB::pack(level, cin, cout, |k, n| u[(x * cin + k) * cout + n])).collect();
        let lanes = Shape::of(level).lanes;
        let cout_pad = cout.div_ceil(lanes) * lanes;
        let padded = |v: &[f32]| {
            let mut a = AlignedVec::zeros(cout_pad.max(u[0].padded_n()));
            a.as_mut_slice()[..v.len()].copy_from_slice(v);
            a
        };
        let tile_block = (BLOCK_BYTES / (36 * 4 * (cin + cout_pad))).clamp(Shape::of(level).mr, MAX_TILES);
        WinogradConv {
            cin,
            cout,
            level,
            bias: bias.map(padded),
            prelu: prelu.map(padded),
            u,
            cout_pad,
            tile_block,
        }
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
        unsafe { self.run_raw(x.data.as_ptr(), &x.layout, y.data.as_mut_ptr(), &yl, act, None, None) }
    }

    /// As [`super::conv::Conv2d::run_raw`] for a 3x3, stride-1, pad-1 convolution.
    ///
    /// # Safety
    /// `x` valid for `xl.len()` reads with `xl.pad >= 1`, `y` for `yl.len()` writes, not
    /// overlapping `x`; `res` and `res2` (which may alias `y` with the same layout) valid for
    /// reads. `res2` needs `res`: `y = res2 + s2·(res + s·act(conv(x) + bias))`.
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
        assert!(xl.pad >= 1, "Winograd input needs a border of 1");
        assert_eq!((xl.c, yl.c), (self.cin, self.cout));
        assert_eq!((xl.h, xl.w), (yl.h, yl.w), "same-size convolution");
        assert!(act != Activation::PRelu || self.prelu.is_some(), "PReLU needs slopes");
        for (_, rl, _) in res.iter().chain(res2.iter()) {
            assert_eq!((rl.h, rl.w), (yl.h, yl.w));
        }
        assert!(res2.is_none() || res.is_some(), "a second residual needs a first one");
        let (th, tw) = (yl.h.div_ceil(4), yl.w.div_ceil(4));
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
        let (v_len, m_len) = (36 * tb * self.cin, 36 * tb * self.cout_pad);
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
                let blk = Block { ty, tx0, n, xl, yl, act, rl, scale, r: rp.0, rl2, scale2, r2: rp2.0 };
                match self.level {
                    #[cfg(target_arch = "x86_64")]
                    CpuLevel::Avx512 => block_avx512(self, &blk, xp.0, yp.0, v, m),
                    #[cfg(target_arch = "x86_64")]
                    CpuLevel::Avx2 => block_avx2(self, &blk, xp.0, yp.0, v, m),
                    #[cfg(target_arch = "aarch64")]
                    CpuLevel::Neon => block(super::simd::neon::Neon::new(), self, &blk, xp.0, yp.0, v, m),
                    _ => block_portable(self, &blk, xp.0, yp.0, v, m),
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
struct Block {
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
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(
    w: &WinogradConv,
    b: &Block,
    x: *mut f32,
    y: *mut f32,
    v: &mut AlignedVec,
    m: &mut AlignedVec,
) {
    use super::simd::avx2::Avx2;
    block(Avx2::new_unchecked(), w, b, x, y, v, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn block_avx512(
    w: &WinogradConv,
    b: &Block,
    x: *mut f32,
    y: *mut f32,
    v: &mut AlignedVec,
    m: &mut AlignedVec,
) {
    use super::simd::avx512::Avx512;
    block(Avx512::new_unchecked(), w, b, x, y, v, m)
}

unsafe fn block_portable(
    w: &WinogradConv,
    b: &Block,
    x: *mut f32,
    y: *mut f32,
    v: &mut AlignedVec,
    m: &mut AlignedVec,
) {
    use super::simd::portable::Portable;
    block(Portable, w, b, x, y, v, m)
}

/// `Bᵀ d B` along one axis: six values in, six out.
#[inline(always)]
fn bt<S: Simd>(s: S, d: [S::V; 6]) -> [S::V; 6] {
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
    ]
}

/// `Aᵀ m A` along one axis: six values in, four out.
#[inline(always)]
fn at<S: Simd>(s: S, m: [S::V; 6]) -> [S::V; 4] {
    let neg = |a: S::V| s.mul(a, s.splat(-1.0));
    let a = s.add(m[1], m[2]);
    let b = s.add(m[1], neg(m[2]));
    let c = s.add(m[3], m[4]);
    let d = s.add(m[3], neg(m[4]));
    [
        s.add(s.add(m[0], a), c),
        s.fma(s.splat(2.0), d, b),
        s.fma(s.splat(4.0), c, a),
        s.add(s.fma(s.splat(8.0), d, b), m[5]),
    ]
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block<S: Simd>(
    s: S,
    w: &WinogradConv,
    b: &Block,
    x: *const f32,
    y: *mut f32,
    v: &mut AlignedVec,
    m: &mut AlignedVec,
) {
    let l = S::LANES;
    let (cin, cout, cp) = (w.cin, w.cout, w.cout_pad);
    let nt = b.n;
    let vb = v.as_mut_ptr();
    let mb = m.as_mut_ptr();
    let (xl, yl) = (&b.xl, &b.yl);
    let zero = s.zero();
    // Input transform: V[t][ξ][c], tile-major so that a tile's 36 transformed vectors land in
    // one contiguous run instead of 36 lines a block apart; the GEMMs read rows 36·Cin apart.
    let (rs, cs) = (xl.row_stride(), xl.cs);
    let oy = (b.ty * 4) as isize - 1;
    // Only the 1-pixel ring of the convolution's own zero padding is read: what lies further
    // out (a wider border, or real pixels when `xl` is a view of a larger map) must not change
    // the result, even through rounding.
    let rows_ok: [bool; 6] = std::array::from_fn(|i| oy + i as isize <= xl.h as isize);
    for t in 0..nt {
        let ox = ((b.tx0 + t) * 4) as isize - 1;
        let cols_ok: [bool; 6] = std::array::from_fn(|j| ox + j as isize <= xl.w as isize);
        // Pixel (oy, ox) is at worst the ring's corner, inside the buffer.
        let base = x.offset(xl.offset(oy, ox));
        let mut c0 = 0;
        while c0 < cin {
            let cn = (cin - c0).min(l);
            // Columns first (Bᵀ d, each column loaded straight into registers), then rows.
            let mut t1 = [[zero; 6]; 6];
            for j in 0..6 {
                let mut col = [zero; 6];
                if cols_ok[j] {
                    for (i, v) in col.iter_mut().enumerate() {
                        if rows_ok[i] {
                            let p = base.add(i * rs + j * cs + c0);
                            *v = if cn == l { s.load(p) } else { s.load_part(p, cn) };
                        }
                    }
                }
                let out = bt(s, col);
                for i in 0..6 {
                    t1[i][j] = out[i];
                }
            }
            for (i, row) in t1.iter().enumerate() {
                let out = bt(s, *row);
                for (j, &o) in out.iter().enumerate() {
                    let dst = vb.add(((t * 36 + i * 6 + j) * cin) + c0);
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
    // 36 GEMMs: M[t][ξ][co] = V[t][ξ][:] · U[ξ].
    let kl = KLayout::dense(cin);
    for (xi, u) in w.u.iter().enumerate() {
        let ops = Ops::new(u, &kl, &Epilogue::NONE);
        let line = Line {
            m: nt,
            a: vb.add(xi * cin),
            a_rs: (36 * cin) as isize,
            c: mb.add(xi * cp),
            c_rs: (36 * cp) as isize,
            res: std::ptr::null(),
            res_rs: 0,
            res2: std::ptr::null(),
            res2_rs: 0,
        };
        run_line(w.level, &line, &ops, 0..u.panels());
    }
    // Output transform, epilogue, store.
    let leaky = match b.act {
        Activation::LeakyRelu(a) => s.splat(a),
        _ => zero,
    };
    let scale = s.splat(b.scale);
    let scale2 = s.splat(b.scale2);
    for t in 0..nt {
        let (oy0, ox0) = (b.ty * 4, (b.tx0 + t) * 4);
        let mut c0 = 0;
        while c0 < cout {
            let cn = (cout - c0).min(l);
            let mut mm = [[zero; 6]; 6];
            for (i, row) in mm.iter_mut().enumerate() {
                for (j, mij) in row.iter_mut().enumerate() {
                    *mij = s.load(mb.add((t * 36 + i * 6 + j) * cp + c0));
                }
            }
            let mut t1 = [[zero; 6]; 4];
            for j in 0..6 {
                let col = at(s, [mm[0][j], mm[1][j], mm[2][j], mm[3][j], mm[4][j], mm[5][j]]);
                for i in 0..4 {
                    t1[i][j] = col[i];
                }
            }
            let bias = w.bias.as_ref().map(|bv| s.load(bv.as_ptr().add(c0)));
            let slopes = w.prelu.as_ref().map(|pv| s.load(pv.as_ptr().add(c0)));
            for (i, row) in t1.iter().enumerate() {
                let yy = oy0 + i;
                if yy >= yl.h {
                    break;
                }
                let out = at(s, *row);
                for (j, &o) in out.iter().enumerate() {
                    let xx = ox0 + j;
                    if xx >= yl.w {
                        break;
                    }
                    let mut val = o;
                    if let Some(bv) = bias {
                        val = s.add(val, bv);
                    }
                    val = match b.act {
                        Activation::None => val,
                        Activation::Relu => s.max(val, zero),
                        Activation::LeakyRelu(_) => s.fma(leaky, s.min(val, zero), s.max(val, zero)),
                        Activation::PRelu => {
                            s.fma(slopes.expect("PReLU slopes"), s.min(val, zero), s.max(val, zero))
                        }
                    };
                    if let Some(rl) = &b.rl {
                        let rp = b.r.offset(rl.offset(yy as isize, xx as isize)).add(c0);
                        let rv = if cn == l { s.load(rp) } else { s.load_part(rp, cn) };
                        val = s.fma(scale, val, rv);
                    }
                    if let Some(rl2) = &b.rl2 {
                        let rp = b.r2.offset(rl2.offset(yy as isize, xx as isize)).add(c0);
                        let rv = if cn == l { s.load(rp) } else { s.load_part(rp, cn) };
                        val = s.fma(scale2, val, rv);
                    }
                    let dp = y.offset(yl.offset(yy as isize, xx as isize)).add(c0);
                    if cn == l {
                        s.store(dp, val);
                    } else {
                        s.store_part(dp, val, cn);
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
    use crate::tensor::Tensor;

    fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn check(cin: usize, cout: usize, h: usize, w: usize, act: Activation, residual: bool) {
        let spec = ConvSpec::same(cin, cout, 3);
        let x = rand_vec(h * w * cin, 1, 1.0);
        let wt = rand_vec(cout * cin * 9, 2, 1.0 / (cin as f32 * 9.0).sqrt());
        let bias = rand_vec(cout, 3, 0.1);
        let slopes = rand_vec(cout, 4, 0.3);
        let res = rand_vec(h * w * cout, 5, 1.0);
        let conv = reference(&x, h, w, &spec, &wt, Some(&bias));
        let want: Vec<f32> = conv
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let v = match act {
                    Activation::None => v,
                    Activation::Relu => v.max(0.0),
                    Activation::LeakyRelu(a) => {
                        if v > 0.0 {
                            v
                        } else {
                            a * v
                        }
                    }
                    Activation::PRelu => {
                        if v > 0.0 {
                            v
                        } else {
                            slopes[i % cout] * v
                        }
                    }
                };
                if residual {
                    res[i] + 0.5 * v
                } else {
                    v
                }
            })
            .collect();
        let xt = Tensor::from_hwc(h, w, cin, 1, &x);
        let rt = Tensor::from_hwc(h, w, cout, 1, &res);
        for level in CpuLevel::supported() {
            let wc = WinogradConv::new(
                level,
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
                )
            };
            let got = yt.to_hwc();
            let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 2e-5, "{level} {cin}->{cout} {h}x{w} {act:?} res={residual}: max error {err}");
        }
    }

    #[test]
    fn matches_direct_convolution() {
        for (h, w) in [(1, 1), (4, 4), (5, 7), (9, 30), (13, 53)] {
            check(16, 16, h, w, Activation::None, false);
            check(19, 35, h, w, Activation::Relu, true);
            check(24, 8, h, w, Activation::LeakyRelu(0.2), false);
            check(8, 20, h, w, Activation::PRelu, true);
        }
    }
}
