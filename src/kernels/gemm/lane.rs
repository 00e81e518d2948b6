//! GEMM microkernel for 4-lane vectors with a lane-indexed FMA (the NEON level).
//!
//! The broadcast kernel of `ukernel.rs` loads every A value with a broadcast (`ld1r` on aarch64):
//! MR loads per K step. Here each A row is loaded four consecutive K values at a time into one
//! vector and consumed lane by lane with `fmla v.4s, v.4s, v.s[L]`, so a K step costs MR/4 loads.
//! A is still read in place through the K layout (no packing): segments are walked in chunks of
//! four, and a segment's last 1-3 values are loaded into the low lanes with the rest zeroed and
//! only those lanes used, so no read leaves the segment.
//!
//! Register budget on the 32 NEON q-registers: a 6 x 4-vector tile holds 24 accumulators and
//! 6 A vectors, leaving 2 for B. Narrower last panels (1-3 vectors) use 7 rows (at most 21
//! accumulators + 7 A vectors). Each output still accumulates its K terms in order, one fused
//! multiply-add each, so tiled and untiled runs agree bit for bit.
//!
//! Only aarch64 runs it natively; elsewhere only the tests run it (on an emulated 4-lane vector).
#![cfg_attr(not(any(test, target_arch = "aarch64")), allow(dead_code))]

use super::ukernel::{epilogue, store_bare, Out};
use super::{Line, Ops, Shape};
use crate::kernels::simd::LaneFma;

/// Rows of the 4-vector (16-column) tile.
pub(crate) const MR: usize = 6;
/// Rows of the tiles of narrower last panels.
pub(crate) const MR_NARROW: usize = 7;
/// Vectors per full panel.
pub(crate) const NV: usize = 4;

/// The blocking of this kernel, for [`Shape::of`].
pub(crate) const SHAPE: Shape = Shape { lanes: 4, nr: NV * 4, mr: MR, mr_narrow: MR_NARROW };

/// One K step for every row of the tile, using lane `L` of the rows' A vectors.
#[inline(always)]
unsafe fn k_step<S: LaneFma, const R: usize, const V: usize, const L: i32>(
    s: S,
    acc: &mut [[S::V; V]; R],
    a: &[S::V; R],
    b: *const f32,
) {
    for j in 0..V {
        let bv = s.load(b.add(j * 4));
        for i in 0..R {
            acc[i][j] = s.fma_lane::<L>(bv, a[i], acc[i][j]);
        }
    }
}

/// R x (V·4) tile: accumulate over all K segments, then run the epilogue and store.
///
/// # Safety
/// See [`super::run_line`]; `b` points at this panel's packed data, whose row width is `V·4`.
#[inline(always)]
unsafe fn tile<S: LaneFma, const R: usize, const V: usize>(
    s: S,
    a: *const f32,
    a_rs: isize,
    segs: &[isize],
    seg_len: usize,
    b: *const f32,
    o: &Out,
) {
    let nb = V * 4;
    let mut acc = [[s.zero(); V]; R];
    let mut rows = [a; R];
    for (i, r) in rows.iter_mut().enumerate() {
        *r = a.offset(i as isize * a_rs);
    }
    let (quads, rem) = (seg_len / 4, seg_len % 4);
    let mut bp = b;
    for &off in segs {
        let mut ap = rows;
        for r in ap.iter_mut() {
            *r = r.offset(off);
        }
        for _ in 0..quads {
            let mut av = [s.zero(); R];
            for i in 0..R {
                av[i] = s.load(ap[i]);
                ap[i] = ap[i].add(4);
            }
            k_step::<S, R, V, 0>(s, &mut acc, &av, bp);
            k_step::<S, R, V, 1>(s, &mut acc, &av, bp.add(nb));
            k_step::<S, R, V, 2>(s, &mut acc, &av, bp.add(2 * nb));
            k_step::<S, R, V, 3>(s, &mut acc, &av, bp.add(3 * nb));
            bp = bp.add(4 * nb);
        }
        if rem > 0 {
            let mut av = [s.zero(); R];
            for i in 0..R {
                av[i] = s.load_part(ap[i], rem);
            }
            k_step::<S, R, V, 0>(s, &mut acc, &av, bp);
            if rem > 1 {
                k_step::<S, R, V, 1>(s, &mut acc, &av, bp.add(nb));
            }
            if rem > 2 {
                k_step::<S, R, V, 2>(s, &mut acc, &av, bp.add(2 * nb));
            }
            bp = bp.add(rem * nb);
        }
    }
    if o.is_bare(V * S::LANES) {
        store_bare::<S, R, V>(s, &acc, o);
        return;
    }
    // Spill with constant indices only, as in `ukernel::tile`, so `acc` stays in registers.
    let mut t = [[s.zero(); V]; R];
    for i in 0..R {
        for j in 0..V {
            t[i][j] = acc[i][j];
        }
    }
    epilogue::<S, R, V>(s, &t, o);
}

/// All rows of a line for one panel of `V` vectors: blocks of `R` rows, then one tail block.
#[inline(always)]
unsafe fn panel_rows<S: LaneFma, const R: usize, const V: usize>(
    s: S,
    line: &Line,
    segs: &[isize],
    seg_len: usize,
    b: *const f32,
    mut o: Out,
) {
    let step = |o: &mut Out, rows: usize| o.advance(rows);
    let a_at = |i: usize| line.a.offset(i as isize * line.a_rs);
    let mut i = 0;
    while i + R <= line.m {
        tile::<S, R, V>(s, a_at(i), line.a_rs, segs, seg_len, b, &o);
        step(&mut o, R);
        i += R;
    }
    let args = (a_at(i), line.a_rs, segs, seg_len, b, &o);
    match line.m - i {
        0 => {}
        1 => tile::<S, 1, V>(s, args.0, args.1, args.2, args.3, args.4, args.5),
        2 => tile::<S, 2, V>(s, args.0, args.1, args.2, args.3, args.4, args.5),
        3 => tile::<S, 3, V>(s, args.0, args.1, args.2, args.3, args.4, args.5),
        4 => tile::<S, 4, V>(s, args.0, args.1, args.2, args.3, args.4, args.5),
        5 => tile::<S, 5, V>(s, args.0, args.1, args.2, args.3, args.4, args.5),
        6 if R > 6 => tile::<S, 6, V>(s, args.0, args.1, args.2, args.3, args.4, args.5),
        r => unreachable!("tail of {r} rows with {R}-row tiles"),
    }
}

/// Compute output columns of panels `panels` for every row of `line` (see [`super::run_line`]).
///
/// # Safety
/// As [`super::run_line`]; `ops.b` must be packed with [`SHAPE`].
#[inline(always)]
pub(crate) unsafe fn line_driver<S: LaneFma>(s: S, line: &Line, ops: &Ops, panels: std::ops::Range<usize>) {
    const { assert!(S::LANES == 4) };
    debug_assert_eq!(ops.b.shape(), SHAPE);
    let segs: &[isize] = &ops.kl.seg_offsets;
    let seg_len = ops.kl.seg_len;
    for p in panels {
        let n0 = p * SHAPE.nr;
        let width = ops.b.panel_width(p);
        let b = ops.b.panel_ptr(p);
        let o = Out::panel(line, ops, n0, width);
        match width / 4 {
            NV => panel_rows::<S, MR, NV>(s, line, segs, seg_len, b, o),
            3 => panel_rows::<S, MR_NARROW, 3>(s, line, segs, seg_len, b, o),
            2 => panel_rows::<S, MR_NARROW, 2>(s, line, segs, seg_len, b, o),
            1 => panel_rows::<S, MR_NARROW, 1>(s, line, segs, seg_len, b, o),
            v => unreachable!("panel of {v} vectors"),
        }
    }
}
