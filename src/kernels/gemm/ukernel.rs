//! The broadcast microkernel and line driver, written once against [`Simd`] and instantiated per
//! level in `avx2.rs`, `avx512.rs` and `portable.rs` inside their `#[target_feature]` shims. The
//! NEON level uses the lane-indexed kernel of `lane.rs` with the epilogue below.

use super::Activation;
#[allow(unused_imports)] // used by the macros' expansion sites
use super::{Line, Ops};
use crate::kernels::simd::Simd;

/// Per-tile output description for the epilogue.
#[derive(Clone, Copy)]
pub(crate) struct Out {
    pub c: *mut f32,
    pub c_rs: isize,
    pub res: *const f32,
    pub res_rs: isize,
    pub res2: *const f32,
    pub res2_rs: isize,
    /// Valid columns of this tile (`1..=NV·LANES`).
    pub cols: usize,
    pub bias: *const f32,
    pub prelu: *const f32,
    pub act: Activation,
    pub res_scale: f32,
    pub res2_scale: f32,
}

impl Out {
    /// The output of panel columns `n0..n0 + width` for the first row of `line`.
    ///
    /// # Safety
    /// The pointers of `line` and `ops` must be valid at column `n0` (see `run_line`).
    #[inline(always)]
    pub(crate) unsafe fn panel(line: &Line, ops: &Ops, n0: usize, width: usize) -> Out {
        let at = |p: *const f32| if p.is_null() { p } else { p.add(n0) };
        Out {
            c: line.c.add(n0),
            c_rs: line.c_rs,
            res: at(line.res),
            res_rs: line.res_rs,
            res2: at(line.res2),
            res2_rs: line.res2_rs,
            cols: (ops.b.n() - n0).min(width),
            bias: at(ops.bias),
            prelu: at(ops.prelu),
            act: ops.act,
            res_scale: ops.res_scale,
            res2_scale: ops.res2_scale,
        }
    }

    /// Whether the tile is stored as it is: every column valid, no bias, activation or residual
    /// (the Winograd GEMMs).
    #[inline(always)]
    pub(crate) fn is_bare(&self, width: usize) -> bool {
        self.cols == width
            && self.bias.is_null()
            && self.res.is_null()
            && self.res2.is_null()
            && self.act == Activation::None
    }

    /// Move down `rows` rows.
    ///
    /// # Safety
    /// The rows must exist in the output and residual buffers.
    #[inline(always)]
    pub(crate) unsafe fn advance(&mut self, rows: usize) {
        self.c = self.c.offset(rows as isize * self.c_rs);
        if !self.res.is_null() {
            self.res = self.res.offset(rows as isize * self.res_rs);
        }
        if !self.res2.is_null() {
            self.res2 = self.res2.offset(rows as isize * self.res2_rs);
        }
    }
}

/// Floats per cache line, the step of the A look-ahead prefetch.
pub(crate) const LINE_FLOATS: usize = 16;

/// The `pf` argument of [`tile`] that prefetches nothing.
pub(crate) const NO_PREFETCH: (*const f32, usize) = (std::ptr::null(), 0);

/// MR x (NV·LANES) tile: accumulate over all K segments, then run the epilogue and store.
/// `pf` is `(first line, count)` of the cache lines to prefetch, one per four K steps (the line
/// driver's look-ahead on dense A; a count of 0 for none).
///
/// # Safety
/// See [`super::run_line`]; additionally `b` points at this panel's packed data, whose row width is
/// `NV·LANES`.
#[inline(always)]
pub(crate) unsafe fn tile<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    a: *const f32,
    a_rs: isize,
    segs: &[isize],
    seg_len: usize,
    b: *const f32,
    o: &Out,
    pf: (*const f32, usize),
) {
    let (mut pf_at, mut pf_left) = pf;
    let mut acc = [[s.zero(); NV]; MR];
    let mut rows = [a; MR];
    for (i, r) in rows.iter_mut().enumerate() {
        *r = a.offset(i as isize * a_rs);
    }
    let mut bp = b;
    for &off in segs {
        let mut ap = rows;
        for r in ap.iter_mut() {
            *r = r.offset(off);
        }
        // Four K steps per trip: on Zen 3 the one-step loop ran the L1-resident 6x16 tile at
        // 0.68-0.89 of an FMA loop's rate with both cores busy, the four-step one at 0.94-0.98.
        let mut kk = 0;
        while kk + 4 <= seg_len {
            if pf_left > 0 {
                s.prefetch(pf_at);
                pf_at = pf_at.wrapping_add(LINE_FLOATS);
                pf_left -= 1;
            }
            for u in 0..4 {
                let mut bv = [s.zero(); NV];
                for (j, v) in bv.iter_mut().enumerate() {
                    *v = s.load(bp.add((u * NV + j) * S::LANES));
                }
                for i in 0..MR {
                    let av = s.splat(*ap[i].add(u));
                    for j in 0..NV {
                        acc[i][j] = s.fma(av, bv[j], acc[i][j]);
                    }
                }
            }
            bp = bp.add(4 * NV * S::LANES);
            for r in ap.iter_mut() {
                *r = r.add(4);
            }
            kk += 4;
        }
        for _ in kk..seg_len {
            let mut bv = [s.zero(); NV];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = s.load(bp.add(j * S::LANES));
            }
            bp = bp.add(NV * S::LANES);
            for i in 0..MR {
                let av = s.splat(*ap[i]);
                ap[i] = ap[i].add(1);
                for j in 0..NV {
                    acc[i][j] = s.fma(av, bv[j], acc[i][j]);
                }
            }
        }
    }
    if o.is_bare(NV * S::LANES) {
        store_bare::<S, MR, NV>(s, &acc, o);
        return;
    }
    // Spill the tile to a stack buffer with constant indices only: if the epilogue below indexed
    // `acc` itself, LLVM would keep `acc` in memory and store it on every K step.
    let mut tile = [[s.zero(); NV]; MR];
    for i in 0..MR {
        for j in 0..NV {
            tile[i][j] = acc[i][j];
        }
    }
    epilogue::<S, MR, NV>(s, &tile, o);
}

/// Bias, activation and residual on an `MR x NV` accumulator tile, then the store of its valid
/// columns.
///
/// # Safety
/// As [`tile`].
#[inline(always)]
pub(crate) unsafe fn epilogue<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    acc: &[[S::V; NV]; MR],
    o: &Out,
) {
    let l = S::LANES;
    if o.is_bare(NV * l) {
        store_bare::<S, MR, NV>(s, acc, o);
        return;
    }
    let zero = s.zero();
    let scale = s.splat(o.res_scale);
    let scale2 = s.splat(o.res2_scale);
    let leaky = match o.act {
        Activation::LeakyRelu(a) => s.splat(a),
        _ => zero,
    };
    for (i, row) in acc.iter().enumerate() {
        let c = o.c.offset(i as isize * o.c_rs);
        let res = if o.res.is_null() { o.res } else { o.res.offset(i as isize * o.res_rs) };
        let res2 = if o.res2.is_null() { o.res2 } else { o.res2.offset(i as isize * o.res2_rs) };
        for (j, &v0) in row.iter().enumerate() {
            let cols = o.cols.saturating_sub(j * l);
            if cols == 0 {
                break;
            }
            let mut v = v0;
            if !o.bias.is_null() {
                v = s.add(v, s.load(o.bias.add(j * l)));
            }
            v = match o.act {
                Activation::None => v,
                Activation::Relu => s.max(v, zero),
                Activation::LeakyRelu(_) => s.fma(leaky, s.min(v, zero), s.max(v, zero)),
                Activation::PRelu => s.fma(s.load(o.prelu.add(j * l)), s.min(v, zero), s.max(v, zero)),
            };
            if !res.is_null() {
                let r = if cols >= l { s.load(res.add(j * l)) } else { s.load_part(res.add(j * l), cols) };
                v = s.fma(scale, v, r);
            }
            if !res2.is_null() {
                let r = if cols >= l { s.load(res2.add(j * l)) } else { s.load_part(res2.add(j * l), cols) };
                v = s.fma(scale2, v, r);
            }
            if cols >= l {
                s.store(c.add(j * l), v);
            } else {
                s.store_part(c.add(j * l), v, cols);
            }
        }
    }
}

/// Store a bare tile ([`Out::is_bare`]) straight from the accumulators. The kernels call this
/// before they spill the tile for the general epilogue: with K = 64 (the Winograd GEMMs of
/// 64-channel layers) the spill and reload were a twentieth of a tile's time (rdtsc around the
/// GEMMs of a 64->64 F(6x6) layer at 320x180, one thread: 28.9 -> 27.4 Mcycles per layer).
///
/// # Safety
/// As [`tile`]; the indices are constants after unrolling, so `acc` stays in registers.
#[inline(always)]
pub(crate) unsafe fn store_bare<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    acc: &[[S::V; NV]; MR],
    o: &Out,
) {
    for i in 0..MR {
        let c = o.c.offset(i as isize * o.c_rs);
        for j in 0..NV {
            s.store(c.add(j * S::LANES), acc[i][j]);
        }
    }
}

/// Dispatch a tail block of `$r` rows (a runtime value) to the const-generic tile.
macro_rules! tail_rows {
    ($r:expr, $s:ident, $nv:literal, $args:tt; $($n:literal)*) => {
        match $r {
            $( $n => tile::<$s, $n, $nv> $args, )*
            _ => unreachable!("tail of {} rows", $r),
        }
    };
}
pub(crate) use tail_rows;

/// Walk a line of rows over the requested panels: full panels in groups whose packed B fits
/// [`super::PANEL_GROUP_BYTES`], and within a group MR-row blocks outer and panels inner, so a
/// block's A rows are reused from L1 across the group's panels while the group stays in L2; then
/// the narrow last panel (if any) with its own row blocking. `$mr`/`$mrn` are the full and narrow
/// row blockings, `$tails`/`$tails_n` list `1..$mr` and `1..$mrn` so each tail size gets its own
/// fully unrolled tile.
macro_rules! line_driver {
    ($s:expr, $S:ident, $line:expr, $ops:expr, $panels:expr, $mr:literal, [$($t:literal)*], $mrn:literal, [$($tn:literal)*]) => {{
        let s: $S = $s;
        let line: &Line = $line;
        let ops: &Ops = $ops;
        let l = <$S as Simd>::LANES;
        let nr = 2 * l;
        let segs: &[isize] = &ops.kl.seg_offsets;
        let seg_len = ops.kl.seg_len;
        let panels: std::ops::Range<usize> = $panels;
        // Only the last panel of B can be narrow.
        let full_end = if panels.end > panels.start && ops.b.panel_width(panels.end - 1) < nr {
            panels.end - 1
        } else {
            panels.end
        };
        let a_at = |i: usize| line.a.offset(i as isize * line.a_rs);
        let out_at = |p: usize, width: usize, i: usize| {
            let mut o = Out::panel(line, ops, p * nr, width);
            o.advance(i);
            o
        };
        // A with one segment and rows that neither overlap nor lie far apart (a dense matrix, a
        // 1x1 conv's activation, a deformable conv's im2col): each block's rows are read from L3
        // or memory by its first panel, and the hardware prefetcher left that panel waiting on
        // them. So the next block's rows are prefetched during this block's panels, a share per
        // panel, one line per four K steps of the tile's loop. Measured on
        // Zen 3 (in-process alternation, FMA-loop ratio, three rounds): sgemm 4096x64x576
        // 0.74-0.83 -> 0.84-0.95 on one thread and 0.69-0.83 -> 0.78-0.93 on two;
        // 57600x64x576 0.67-0.84 -> 0.71-0.94. Conv A (several segments, overlapping rows)
        // is mostly in cache already and gets none.
        use crate::kernels::gemm::ukernel::{LINE_FLOATS, NO_PREFETCH};
        let dense = segs.len() == 1 && line.a_rs >= seg_len as isize && line.a_rs <= 2 * seg_len as isize;
        let panel_bytes = segs.len() * seg_len * nr * std::mem::size_of::<f32>();
        let group = (crate::kernels::gemm::PANEL_GROUP_BYTES / panel_bytes.max(1)).max(1);
        let mut g0 = panels.start;
        while g0 < full_end {
            let g1 = (g0 + group).min(full_end);
            let mut i = 0usize;
            while i + $mr <= line.m {
                let next = (line.m - i - $mr).min($mr);
                let (pf0, per) = if dense && next > 0 {
                    let floats = (next - 1) * line.a_rs as usize + seg_len;
                    let lines = floats.div_ceil(LINE_FLOATS) + 1;
                    (a_at(i + $mr).offset(segs[0]), lines.div_ceil(g1 - g0))
                } else {
                    NO_PREFETCH
                };
                for p in g0..g1 {
                    let o = out_at(p, nr, i);
                    let pf = (pf0.wrapping_add((p - g0) * per * LINE_FLOATS), per);
                    tile::<$S, $mr, 2>(s, a_at(i), line.a_rs, segs, seg_len, ops.b.panel_ptr(p), &o, pf);
                }
                i += $mr;
            }
            if i < line.m {
                for p in g0..g1 {
                    let o = out_at(p, nr, i);
                    tail_rows!(line.m - i, $S, 2, (s, a_at(i), line.a_rs, segs, seg_len, ops.b.panel_ptr(p), &o, NO_PREFETCH); $($t)*);
                }
            }
            g0 = g1;
        }
        if full_end < panels.end {
            let p = full_end;
            let width = ops.b.panel_width(p);
            let b = ops.b.panel_ptr(p);
            let mut i = 0usize;
            while i + $mrn <= line.m {
                tile::<$S, $mrn, 1>(s, a_at(i), line.a_rs, segs, seg_len, b, &out_at(p, width, i), NO_PREFETCH);
                i += $mrn;
            }
            if i < line.m {
                tail_rows!(line.m - i, $S, 1, (s, a_at(i), line.a_rs, segs, seg_len, b, &out_at(p, width, i), NO_PREFETCH); $($tn)*);
            }
        }
    }};
}
pub(crate) use line_driver;
