//! YUV <-> RGB for video: BT.601/BT.709 matrices, limited or full range, 8-16 bits, and chroma
//! resampling that respects where the chroma samples sit.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matrix {
    Bt601,
    Bt709,
}

impl Matrix {
    /// (Kr, Kb).
    fn k(self) -> (f32, f32) {
        match self {
            Matrix::Bt601 => (0.299, 0.114),
            Matrix::Bt709 => (0.2126, 0.0722),
        }
    }
}

impl std::str::FromStr for Matrix {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bt601" | "601" | "smpte170m" | "bt470bg" => Ok(Matrix::Bt601),
            "bt709" | "709" => Ok(Matrix::Bt709),
            o => Err(Error::Usage(format!("unknown --matrix '{o}' (bt601, bt709)"))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// Studio range: Y in 16..235, chroma in 16..240 (scaled for higher bit depths).
    Limited,
    Full,
}

impl std::str::FromStr for Range {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "limited" | "tv" | "mpeg" => Ok(Range::Limited),
            "full" | "pc" | "jpeg" => Ok(Range::Full),
            o => Err(Error::Usage(format!("unknown --range '{o}' (limited, full)"))),
        }
    }
}

/// Chroma subsampling of a YUV frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subsampling {
    Mono,
    S420,
    S422,
    S444,
}

impl Subsampling {
    /// (horizontal, vertical) chroma decimation.
    pub fn factors(self) -> (usize, usize) {
        match self {
            Subsampling::S420 => (2, 2),
            Subsampling::S422 => (2, 1),
            Subsampling::S444 | Subsampling::Mono => (1, 1),
        }
    }

    /// Chroma plane size for a `w x h` frame (odd sizes round up).
    pub fn chroma_size(self, w: usize, h: usize) -> (usize, usize) {
        match self {
            Subsampling::Mono => (0, 0),
            _ => {
                let (fx, fy) = self.factors();
                (w.div_ceil(fx), h.div_ceil(fy))
            }
        }
    }
}

/// Position of subsampled chroma samples relative to luma, in luma pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Siting {
    /// Between luma samples in both directions (JPEG/MPEG-1, Y4M `420jpeg`).
    Center,
    /// Co-sited horizontally, between rows vertically (MPEG-2, Y4M `420mpeg2`).
    Left,
    /// Co-sited in both directions (Y4M `420paldv`).
    TopLeft,
}

impl Siting {
    /// Offset of chroma sample 0 from luma sample 0, (x, y), in luma pixels.
    fn offset(self, s: Subsampling) -> (f32, f32) {
        let (fx, fy) = s.factors();
        let hx = if fx == 2 && self == Siting::Center { 0.5 } else { 0.0 };
        let hy = if fy == 2 && self != Siting::TopLeft { 0.5 } else { 0.0 };
        (hx, hy)
    }
}

/// How YUV samples map to RGB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct YuvFormat {
    pub matrix: Matrix,
    pub range: Range,
    pub bits: u32,
    pub subsampling: Subsampling,
    pub siting: Siting,
}

impl YuvFormat {
    fn max(&self) -> f32 {
        ((1u32 << self.bits) - 1) as f32
    }

    /// (luma scale, luma offset, chroma scale, chroma offset) in code values.
    fn scales(&self) -> (f32, f32, f32, f32) {
        let k = (1u32 << (self.bits - 8)) as f32;
        match self.range {
            Range::Limited => (219.0 * k, 16.0 * k, 224.0 * k, 128.0 * k),
            Range::Full => (self.max(), 0.0, self.max(), (1u32 << (self.bits - 1)) as f32),
        }
    }
}

/// A planar YUV frame with samples of any depth stored as u16.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YuvFrame {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u16>,
    pub u: Vec<u16>,
    pub v: Vec<u16>,
}

/// Chroma plane upsampled to full resolution by bilinear interpolation from the sample positions.
fn upsample_plane(
    p: &[u16],
    cw: usize,
    ch: usize,
    w: usize,
    h: usize,
    off: (f32, f32),
    f: (usize, usize),
) -> Vec<f32> {
    let coord = |o: usize, off: f32, f: usize, n: usize| -> (usize, usize, f32) {
        let u = ((o as f32 - off) / f as f32).max(0.0);
        let i0 = (u.floor() as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        (i0, i1, u - i0 as f32)
    };
    let xs: Vec<_> = (0..w).map(|x| coord(x, off.0, f.0, cw)).collect();
    let mut out = vec![0.0f32; w * h];
    for y in 0..h {
        let (y0, y1, ly) = coord(y, off.1, f.1, ch);
        for (x, &(x0, x1, lx)) in xs.iter().enumerate() {
            let at = |yy: usize, xx: usize| p[yy * cw + xx] as f32;
            let top = at(y0, x0) * (1.0 - lx) + at(y0, x1) * lx;
            let bot = at(y1, x0) * (1.0 - lx) + at(y1, x1) * lx;
            out[y * w + x] = top * (1.0 - ly) + bot * ly;
        }
    }
    out
}

/// Full-resolution chroma decimated to the plane size with a filter centred on each chroma
/// sample's position: a box over the pair for in-between siting, [1 2 1]/4 for co-sited.
fn downsample_plane(
    p: &[f32],
    w: usize,
    h: usize,
    cw: usize,
    ch: usize,
    off: (f32, f32),
    f: (usize, usize),
) -> Vec<f32> {
    let taps = |fac: usize, off: f32| -> Vec<(isize, f32)> {
        match (fac, off == 0.0) {
            (1, _) => vec![(0, 1.0)],
            (_, false) => vec![(0, 0.5), (1, 0.5)],
            (_, true) => vec![(-1, 0.25), (0, 0.5), (1, 0.25)],
        }
    };
    let (tx, ty) = (taps(f.0, off.0), taps(f.1, off.1));
    let mut out = vec![0.0f32; cw * ch];
    for cy in 0..ch {
        for cx in 0..cw {
            let mut acc = 0.0;
            for &(dy, wy) in &ty {
                let yy = ((cy * f.1) as isize + dy).clamp(0, h as isize - 1) as usize;
                for &(dx, wx) in &tx {
                    let xx = ((cx * f.0) as isize + dx).clamp(0, w as isize - 1) as usize;
                    acc += wy * wx * p[yy * w + xx];
                }
            }
            out[cy * cw + cx] = acc;
        }
    }
    out
}

/// Dense HWC RGB in [0,1] (clamped, as networks expect in-gamut input).
pub fn yuv_to_rgb(f: &YuvFrame, fmt: &YuvFormat) -> Vec<f32> {
    let (w, h) = (f.width, f.height);
    let (ys, yo, cs, co) = fmt.scales();
    let (kr, kb) = fmt.matrix.k();
    let kg = 1.0 - kr - kb;
    let mut rgb = vec![0.0f32; w * h * 3];
    if fmt.subsampling == Subsampling::Mono {
        for (i, &y) in f.y.iter().enumerate() {
            let v = ((y as f32 - yo) / ys).clamp(0.0, 1.0);
            rgb[i * 3..i * 3 + 3].fill(v);
        }
        return rgb;
    }
    let (cw, ch) = fmt.subsampling.chroma_size(w, h);
    let off = fmt.siting.offset(fmt.subsampling);
    let fac = fmt.subsampling.factors();
    let u = upsample_plane(&f.u, cw, ch, w, h, off, fac);
    let v = upsample_plane(&f.v, cw, ch, w, h, off, fac);
    for i in 0..w * h {
        let yn = (f.y[i] as f32 - yo) / ys;
        let cb = (u[i] - co) / cs;
        let cr = (v[i] - co) / cs;
        let r = yn + 2.0 * (1.0 - kr) * cr;
        let b = yn + 2.0 * (1.0 - kb) * cb;
        let g = (yn - kr * r - kb * b) / kg;
        rgb[i * 3] = r.clamp(0.0, 1.0);
        rgb[i * 3 + 1] = g.clamp(0.0, 1.0);
        rgb[i * 3 + 2] = b.clamp(0.0, 1.0);
    }
    rgb
}

fn quantize(v: f32, max: f32) -> u16 {
    (v.clamp(0.0, max) + 0.5).floor() as u16
}

/// Dense HWC RGB (any range; clamped to [0,1]) to YUV in `fmt`.
pub fn rgb_to_yuv(rgb: &[f32], w: usize, h: usize, fmt: &YuvFormat) -> YuvFrame {
    let (ys, yo, cs, co) = fmt.scales();
    let (kr, kb) = fmt.matrix.k();
    let kg = 1.0 - kr - kb;
    let max = fmt.max();
    let mut y = vec![0u16; w * h];
    let mut cb = vec![0.0f32; w * h];
    let mut cr = vec![0.0f32; w * h];
    for i in 0..w * h {
        let [r, g, b] = [rgb[i * 3], rgb[i * 3 + 1], rgb[i * 3 + 2]].map(|v| v.clamp(0.0, 1.0));
        let yn = kr * r + kg * g + kb * b;
        y[i] = quantize(yo + ys * yn, max);
        cb[i] = co + cs * (b - yn) / (2.0 * (1.0 - kb));
        cr[i] = co + cs * (r - yn) / (2.0 * (1.0 - kr));
    }
    if fmt.subsampling == Subsampling::Mono {
        return YuvFrame { width: w, height: h, y, u: Vec::new(), v: Vec::new() };
    }
    let (cw, ch) = fmt.subsampling.chroma_size(w, h);
    let off = fmt.siting.offset(fmt.subsampling);
    let fac = fmt.subsampling.factors();
    let u = downsample_plane(&cb, w, h, cw, ch, off, fac).into_iter().map(|v| quantize(v, max)).collect();
    let v = downsample_plane(&cr, w, h, cw, ch, off, fac).into_iter().map(|v| quantize(v, max)).collect();
    YuvFrame { width: w, height: h, y, u, v }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(bits: u32, range: Range, matrix: Matrix, s: Subsampling) -> YuvFormat {
        YuvFormat { matrix, range, bits, subsampling: s, siting: Siting::Center }
    }

    #[test]
    fn reference_colours() {
        // BT.601 limited: white 235/128/128, black 16, pure red Y=81 Cb=90 Cr=240.
        let f = fmt(8, Range::Limited, Matrix::Bt601, Subsampling::S444);
        let px = |r: f32, g: f32, b: f32| {
            let y = rgb_to_yuv(&[r, g, b], 1, 1, &f);
            (y.y[0], y.u[0], y.v[0])
        };
        assert_eq!(px(1.0, 1.0, 1.0), (235, 128, 128));
        assert_eq!(px(0.0, 0.0, 0.0), (16, 128, 128));
        assert_eq!(px(1.0, 0.0, 0.0), (81, 90, 240));
        let f10 = fmt(10, Range::Limited, Matrix::Bt709, Subsampling::S444);
        let w = rgb_to_yuv(&[1.0, 1.0, 1.0], 1, 1, &f10);
        assert_eq!((w.y[0], w.u[0], w.v[0]), (940, 512, 512));
        let full = fmt(8, Range::Full, Matrix::Bt601, Subsampling::S444);
        let k = rgb_to_yuv(&[0.0, 0.0, 0.0], 1, 1, &full);
        assert_eq!((k.y[0], k.u[0], k.v[0]), (0, 128, 128));
    }

    #[test]
    fn round_trip_within_one_code() {
        for bits in [8, 10] {
            for range in [Range::Limited, Range::Full] {
                for matrix in [Matrix::Bt601, Matrix::Bt709] {
                    let f = fmt(bits, range, matrix, Subsampling::S444);
                    // Every YUV triple that maps inside the RGB cube must survive the round trip.
                    let max = (1u32 << bits) - 1;
                    let step = (max / 17).max(1) as usize;
                    for y in (0..=max).step_by(step) {
                        for u in (0..=max).step_by(step) {
                            for v in (0..=max).step_by(step) {
                                let src = YuvFrame {
                                    width: 1,
                                    height: 1,
                                    y: vec![y as u16],
                                    u: vec![u as u16],
                                    v: vec![v as u16],
                                };
                                let (ys, yo, cs, co) = f.scales();
                                let (kr, kb) = matrix.k();
                                let yn = (y as f32 - yo) / ys;
                                let r = yn + 2.0 * (1.0 - kr) * (v as f32 - co) / cs;
                                let b = yn + 2.0 * (1.0 - kb) * (u as f32 - co) / cs;
                                let g = (yn - kr * r - kb * b) / (1.0 - kr - kb);
                                let inside = [r, g, b].iter().all(|c| (0.0..=1.0).contains(c));
                                if !inside {
                                    continue;
                                }
                                let back = rgb_to_yuv(&yuv_to_rgb(&src, &f), 1, 1, &f);
                                for (a, b) in [(y, back.y[0]), (u, back.u[0]), (v, back.v[0])] {
                                    assert!(
                                        (a as i32 - b as i32).abs() <= 1,
                                        "{bits}-bit {range:?} {matrix:?}: {a} -> {b}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn flat_chroma_survives_subsampling_for_every_siting() {
        for s in [Subsampling::S420, Subsampling::S422] {
            for siting in [Siting::Center, Siting::Left, Siting::TopLeft] {
                let f = YuvFormat {
                    matrix: Matrix::Bt601,
                    range: Range::Limited,
                    bits: 8,
                    subsampling: s,
                    siting,
                };
                let (w, h) = (7, 5); // odd sizes: chroma planes round up
                let (cw, ch) = s.chroma_size(w, h);
                let src = YuvFrame {
                    width: w,
                    height: h,
                    y: vec![120; w * h],
                    u: vec![100; cw * ch],
                    v: vec![150; cw * ch],
                };
                let back = rgb_to_yuv(&yuv_to_rgb(&src, &f), w, h, &f);
                assert_eq!(back.u.len(), cw * ch);
                assert!(back.y.iter().all(|&v| (v as i32 - 120).abs() <= 1));
                assert!(back.u.iter().all(|&v| (v as i32 - 100).abs() <= 1), "{s:?} {siting:?}");
                assert!(back.v.iter().all(|&v| (v as i32 - 150).abs() <= 1), "{s:?} {siting:?}");
            }
        }
    }
}
