//! Splitting an image into tiles that overlap by a context margin. Each tile owns a disjoint
//! rectangle of the image; the owned rectangles cover the image exactly once, and each is run with
//! up to `pad` pixels of real context on every side (clipped at the image edge, where the network
//! sees the same zero padding as on a whole image).
//!
//! For networks that need their input size to be a multiple of `align` (strided U-Nets,
//! pixel-unshuffle), the image is thought of as extended to the next multiple (with made-up edge
//! pixels, see [`crate::models::EdgeMode`]), and every tile's run rectangle starts and ends on
//! multiples of `align`, so each tile sees the same down-sampling grid as the whole image.

/// A tile: the owned rectangle `[y0, y1) x [x0, x1)` and the padded rectangle that is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
    pub py0: usize,
    pub py1: usize,
    pub px0: usize,
    pub px1: usize,
}

impl Tile {
    pub fn padded_h(&self) -> usize {
        self.py1 - self.py0
    }

    pub fn padded_w(&self) -> usize {
        self.px1 - self.px0
    }
}

/// The largest multiple of 16 from `min` (rounded up to one) up to `n` for which `fits` holds,
/// found by bisection (memory grows with the tile edge); `min` when none does.
pub fn largest_tile(n: usize, min: usize, fits: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (min.div_ceil(16).max(1), n.div_ceil(16).max(1));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid * 16) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    (lo * 16).max(min)
}

/// Tiles of at most `tile x tile` owned pixels (`tile == 0` or larger than the image: one tile;
/// an axis that `tile + 2·pad` spans is not split), in row-major order.
pub fn tiles(h: usize, w: usize, tile: usize, pad: usize) -> Vec<Tile> {
    tiles_aligned(h, w, tile, pad, 1)
}

/// As [`tiles`], with tile edges, context and run rectangles in multiples of `align` (`tile` and
/// `pad` are rounded up to one); run rectangles may extend past the image to the next multiple.
/// An axis is not split where a tile with its context on both sides would span it anyway.
pub fn tiles_aligned(h: usize, w: usize, tile: usize, pad: usize, align: usize) -> Vec<Tile> {
    let a = align.max(1);
    let pad = pad.next_multiple_of(a);
    let (ha, wa) = (h.next_multiple_of(a), w.next_multiple_of(a));
    // Along an axis where one tile plus its context on both sides already spans the image, every
    // tile but the edge ones runs the whole axis: splitting there repeats the same work per tile
    // (a network with a large receptive field on a small image ran the whole image once per tile)
    // and saves no memory, so that axis is not split.
    let edge = |n: usize| {
        let t = tile.next_multiple_of(a);
        if tile == 0 || t + 2 * pad >= n {
            n.max(1)
        } else {
            t
        }
    };
    let (th, tw) = (edge(ha), edge(wa));
    let mut out = Vec::new();
    for y0 in (0..h).step_by(th) {
        let y1 = (y0 + th).min(h);
        for x0 in (0..w).step_by(tw) {
            let x1 = (x0 + tw).min(w);
            out.push(Tile {
                y0,
                y1,
                x0,
                x1,
                py0: y0.saturating_sub(pad),
                py1: (y1.next_multiple_of(a) + pad).min(ha),
                px0: x0.saturating_sub(pad),
                px1: (x1.next_multiple_of(a) + pad).min(wa),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tiles_cover_the_image_exactly_once(h in 1usize..90, w in 1usize..90, tile in 0usize..40, pad in 0usize..20) {
            let mut count = vec![0u8; h * w];
            for t in tiles(h, w, tile, pad) {
                prop_assert!(t.py0 <= t.y0 && t.y1 <= t.py1 && t.py1 <= h);
                prop_assert!(t.px0 <= t.x0 && t.x1 <= t.px1 && t.px1 <= w);
                prop_assert!(t.y0 - t.py0 == pad.min(t.y0) && t.py1 - t.y1 == pad.min(h - t.y1));
                if tile > 0 {
                    // An axis is split into tiles of at most `tile`, unless one tile with its
                    // context would span it: then it is whole.
                    prop_assert!(t.y1 - t.y0 <= tile || (tile + 2 * pad >= h && t.y1 - t.y0 == h));
                    prop_assert!(t.x1 - t.x0 <= tile || (tile + 2 * pad >= w && t.x1 - t.x0 == w));
                    // Never a run rectangle larger than a tile with its context.
                    prop_assert!(t.padded_h() <= h.min(tile + 2 * pad) || t.padded_h() == h);
                }
                for y in t.y0..t.y1 {
                    for x in t.x0..t.x1 {
                        count[y * w + x] += 1;
                    }
                }
            }
            prop_assert!(count.iter().all(|&c| c == 1));
        }

        #[test]
        fn an_axis_is_split_only_where_it_saves_work(h in 1usize..200, w in 1usize..200, tile in 1usize..40, pad in 0usize..60) {
            let ts = tiles(h, w, tile, pad);
            let rows = ts.iter().filter(|t| t.x0 == 0).count();
            let cols = ts.iter().filter(|t| t.y0 == 0).count();
            prop_assert_eq!(rows, if tile + 2 * pad >= h { 1 } else { h.div_ceil(tile) });
            prop_assert_eq!(cols, if tile + 2 * pad >= w { 1 } else { w.div_ceil(tile) });
        }

        #[test]
        fn aligned_tiles_run_on_the_grid(h in 1usize..70, w in 1usize..70, tile in 0usize..30, pad in 0usize..9,
                                         align in proptest::sample::select(vec![1usize, 2, 4])) {
            let mut count = vec![0u8; h * w];
            for t in tiles_aligned(h, w, tile, pad, align) {
                for v in [t.py0, t.py1, t.px0, t.px1] {
                    prop_assert_eq!(v % align, 0);
                }
                prop_assert!(t.py0 <= t.y0 && t.y1 <= t.py1 && t.py1 <= h.next_multiple_of(align));
                prop_assert!(t.y0 - t.py0 >= pad.min(t.y0));
                for y in t.y0..t.y1 {
                    for x in t.x0..t.x1 {
                        count[y * w + x] += 1;
                    }
                }
            }
            prop_assert!(count.iter().all(|&c| c == 1));
        }
    }
}
