//! MATLAB-exact `imresize(img, scale, 'bicubic')`: the "BI" degradation that made the SISR
//! benchmark LR files, and the bicubic baseline every paper compares against.
//!
//! Bit-exactness with the official files depends on details that a generic bicubic gets wrong, so
//! this follows MATLAB's `contributions()` step by step, in f64 as MATLAB does:
//!
//! - Keys' cubic kernel with a = -0.5; when shrinking (scale < 1) the kernel is widened by
//!   1/scale and scaled by `scale` (antialiasing), so it has `4/scale` taps plus two.
//! - Output pixel i (1-based) samples input coordinate `u = i/scale + 0.5·(1 - 1/scale)`.
//! - Each row of weights is normalised to sum 1; out-of-range taps are clamped to the edge
//!   (replicated end pixels, not a mirror).
//! - Rows are resized first, then columns (MATLAB resizes the dimension with the smaller scale
//!   first and breaks the tie towards the first dimension); integer images are rounded (half away
//!   from zero) and saturated after *each* pass, as MATLAB's uint8/uint16 passes are.
//! - The output size is `ceil(in · scale)`.

use crate::error::{Error, Result};
use crate::io::image::{ImageView, Samples, SamplesRef};
use crate::pipeline::OutputImage;
use rayon::prelude::*;

/// Keys' cubic convolution kernel, a = -0.5, in f64 and in the same operation order as the
/// reference (`|x|³` as `|x|²·|x|`).
#[inline]
pub fn cubic(x: f64) -> f64 {
    let ax = x.abs();
    let ax2 = ax * ax;
    let ax3 = ax2 * ax;
    if ax <= 1.0 {
        1.5 * ax3 - 2.5 * ax2 + 1.0
    } else if ax <= 2.0 {
        -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    } else {
        0.0
    }
}

/// Sum in numpy's pairwise order (8 interleaved partial sums for up to 128 values, then the
/// tail), so that weight normalisation rounds exactly as the numpy reference that was verified
/// against the MATLAB files.
pub(crate) fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        return a.iter().fold(0.0, |s, &v| s + v);
    }
    if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[i..] {
            res += v;
        }
        return res;
    }
    let half = (n / 2) - (n / 2) % 8;
    pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
}

/// The taps of a 1-D resize: for each output index, `taps` source indices (0-based, clamped)
/// and their normalised weights. Taps whose weight is zero for every output are dropped, as
/// MATLAB does (this changes no sum).
#[derive(Clone, Debug, PartialEq)]
pub struct Contributions {
    pub out_len: usize,
    pub taps: usize,
    pub index: Vec<usize>,
    pub weight: Vec<f64>,
}

/// MATLAB `contributions(in_length, out_length, scale, @cubic, 4, antialiasing)`.
pub fn contributions(in_len: usize, out_len: usize, scale: f64, antialias: bool) -> Contributions {
    let shrink = scale < 1.0 && antialias;
    let kw = if shrink { 4.0 / scale } else { 4.0 };
    let p = kw.ceil() as usize + 2;
    let mut index = vec![0isize; out_len * p];
    let mut weight = vec![0f64; out_len * p];
    for o in 0..out_len {
        let x = (o + 1) as f64;
        let u = x / scale + 0.5 * (1.0 - 1.0 / scale);
        let left = (u - kw / 2.0).floor();
        let row = &mut weight[o * p..(o + 1) * p];
        for (k, w) in row.iter_mut().enumerate() {
            let j = left + k as f64;
            index[o * p + k] = j as isize;
            *w = if shrink { scale * cubic((u - j) * scale) } else { cubic(u - j) };
        }
        let sum = pairwise_sum(row);
        for w in row.iter_mut() {
            *w /= sum;
        }
    }
    let keep: Vec<usize> = (0..p).filter(|&k| (0..out_len).any(|o| weight[o * p + k] != 0.0)).collect();
    let taps = keep.len();
    let mut ci = Vec::with_capacity(out_len * taps);
    let mut cw = Vec::with_capacity(out_len * taps);
    for o in 0..out_len {
        for &k in &keep {
            // 1-based MATLAB index clamped to [1, in_len], stored 0-based.
            ci.push((index[o * p + k] - 1).clamp(0, in_len as isize - 1) as usize);
            cw.push(weight[o * p + k]);
        }
    }
    Contributions { out_len, taps, index: ci, weight: cw }
}

/// MATLAB's integer cast: round half away from zero, saturate to `[0, max]`.
#[inline]
fn to_int(v: f64, max: f64) -> f64 {
    (v + 0.5).floor().clamp(0.0, max)
}

/// Resize along the first axis of a `rows x inner` array (inner = columns x channels).
fn pass_rows(src: &[f64], inner: usize, c: &Contributions, round: Option<f64>) -> Vec<f64> {
    let mut out = vec![0f64; c.out_len * inner];
    out.par_chunks_mut(inner.max(1)).enumerate().for_each(|(o, row)| {
        let idx = &c.index[o * c.taps..(o + 1) * c.taps];
        let wts = &c.weight[o * c.taps..(o + 1) * c.taps];
        for (i, v) in row.iter_mut().enumerate() {
            let mut acc = 0.0;
            for (&j, &w) in idx.iter().zip(wts) {
                acc += w * src[j * inner + i];
            }
            *v = match round {
                Some(max) => to_int(acc, max),
                None => acc,
            };
        }
    });
    out
}

/// Resize along the second axis of a `rows x cols x ch` array.
fn pass_cols(
    src: &[f64],
    rows: usize,
    cols: usize,
    ch: usize,
    c: &Contributions,
    round: Option<f64>,
) -> Vec<f64> {
    let ow = c.out_len;
    let mut out = vec![0f64; rows * ow * ch];
    out.par_chunks_mut((ow * ch).max(1)).enumerate().for_each(|(y, row)| {
        let line = &src[y * cols * ch..(y + 1) * cols * ch];
        for o in 0..ow {
            let idx = &c.index[o * c.taps..(o + 1) * c.taps];
            let wts = &c.weight[o * c.taps..(o + 1) * c.taps];
            for k in 0..ch {
                let mut acc = 0.0;
                for (&j, &w) in idx.iter().zip(wts) {
                    acc += w * line[j * ch + k];
                }
                row[o * ch + k] = match round {
                    Some(max) => to_int(acc, max),
                    None => acc,
                };
            }
        }
    });
    out
}

/// Output size of `imresize` by `scale` along one axis: `ceil(len · scale)`.
pub fn output_len(len: usize, scale: f64) -> usize {
    (len as f64 * scale).ceil() as usize
}

/// Samples as f64 with their maximum value (255 or 65535): MATLAB resizes integer images in
/// double and casts back to the input's class.
pub(crate) fn to_f64(img: &ImageView) -> (Vec<f64>, f64) {
    match img.samples {
        SamplesRef::U8(s) => (s.iter().map(|&v| v as f64).collect(), 255.0),
        SamplesRef::U16(s) => (s.iter().map(|&v| v as f64).collect(), 65535.0),
    }
}

/// Integer-valued f64 samples (already rounded and saturated) back in the class of `like`.
pub(crate) fn from_f64(values: &[f64], like: &ImageView) -> Samples {
    match like.samples {
        SamplesRef::U8(_) => Samples::U8(values.iter().map(|&v| v as u8).collect()),
        SamplesRef::U16(_) => Samples::U16(values.iter().map(|&v| v as u16).collect()),
    }
}

/// Check a resize request and return the output size `(width, height)`.
fn check(img: &ImageView, scale: f64) -> Result<(usize, usize)> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Usage(format!("resize scale must be a positive number, not {scale}")));
    }
    let (w, h, c) = img.checked_dims()?;
    let (ow, oh) = (output_len(w, scale), output_len(h, scale));
    if ow == 0 || oh == 0 {
        return Err(Error::Usage(format!("resizing {w}x{h} by {scale} leaves no pixels")));
    }
    if ow > u32::MAX as usize
        || oh > u32::MAX as usize
        || ow.checked_mul(oh).and_then(|p| p.checked_mul(c)).is_none()
    {
        return Err(Error::Usage(format!("resizing {w}x{h} by {scale} gives an image too large to hold")));
    }
    Ok((ow, oh))
}

/// MATLAB `imresize(img, scale, 'bicubic')` (antialiasing on) of an 8- or 16-bit image, every
/// channel alike (alpha included). Downscaling by an integer factor `s` is `scale = 1.0 / s as
/// f64`, as MATLAB computes it from `1/s`.
pub fn imresize(img: &ImageView, scale: f64) -> Result<OutputImage> {
    let (ow, oh) = check(img, scale)?;
    let (w, h, ch) = (img.width as usize, img.height as usize, img.channels as usize);
    let (data, max) = to_f64(img);
    let cr = contributions(h, oh, scale, true);
    let cc = contributions(w, ow, scale, true);
    let rows = pass_rows(&data, w * ch, &cr, Some(max));
    let out = pass_cols(&rows, oh, w, ch, &cc, Some(max));
    Ok(OutputImage { width: ow as u32, height: oh as u32, channels: ch as u8, samples: from_f64(&out, img) })
}

/// Crop an image at the bottom and right to a multiple of `s` in each dimension (the papers'
/// `modcrop`, applied to HR images before making LR ones and before scoring).
pub fn modcrop(img: &ImageView, s: usize) -> Result<OutputImage> {
    if s == 0 {
        return Err(Error::Usage("scale must be at least 1".into()));
    }
    let (w, h) = (img.width as usize, img.height as usize);
    if w < s || h < s {
        return Err(Error::Usage(format!("a {w}x{h} image is smaller than the scale {s}")));
    }
    crop(img, 0, 0, w - w % s, h - h % s)
}

/// Copy the rectangle `[x0, x0+cw) x [y0, y0+chh)` of an image.
pub fn crop(img: &ImageView, x0: usize, y0: usize, cw: usize, chh: usize) -> Result<OutputImage> {
    let (w, h, c) = (img.width as usize, img.height as usize, img.channels as usize);
    if cw == 0 || chh == 0 || x0 + cw > w || y0 + chh > h {
        return Err(Error::Usage(format!("crop {cw}x{chh} at ({x0},{y0}) does not fit a {w}x{h} image")));
    }
    fn rect<T: Copy>(s: &[T], w: usize, c: usize, x0: usize, y0: usize, cw: usize, chh: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(cw * chh * c);
        for y in y0..y0 + chh {
            out.extend_from_slice(&s[(y * w + x0) * c..(y * w + x0 + cw) * c]);
        }
        out
    }
    let samples = match img.samples {
        SamplesRef::U8(s) => Samples::U8(rect(s, w, c, x0, y0, cw, chh)),
        SamplesRef::U16(s) => Samples::U16(rect(s, w, c, x0, y0, cw, chh)),
    };
    Ok(OutputImage { width: cw as u32, height: chh as u32, channels: c as u8, samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(w: u32, h: u32, c: u8, px: &'a [u8]) -> ImageView<'a> {
        ImageView { width: w, height: h, channels: c, samples: SamplesRef::U8(px) }
    }

    #[test]
    fn pairwise_sum_matches_plain_sum_on_exact_values() {
        for n in [0, 1, 7, 8, 9, 13, 18, 127, 128, 129, 300] {
            let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert_eq!(pairwise_sum(&v), (0..n).sum::<usize>() as f64, "n = {n}");
        }
    }

    #[test]
    fn weights_are_normalised() {
        for (inl, s) in [(24usize, 0.5), (24, 1.0 / 3.0), (24, 0.25), (6, 2.0), (6, 3.0), (7, 4.0)] {
            let out = output_len(inl, s);
            let c = contributions(inl, out, s, true);
            for o in 0..out {
                let sum: f64 = c.weight[o * c.taps..(o + 1) * c.taps].iter().sum();
                assert!((sum - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn constant_images_stay_constant_and_sizes_are_ceil() {
        let px = vec![77u8; 10 * 7 * 3];
        for s in [0.5, 1.0 / 3.0, 0.25, 2.0, 3.0, 4.0] {
            let out = imresize(&view(10, 7, 3, &px), s).unwrap();
            assert_eq!((out.width as usize, out.height as usize), (output_len(10, s), output_len(7, s)));
            let Samples::U8(o) = out.samples else { unreachable!() };
            assert!(o.iter().all(|&v| v == 77), "scale {s}");
        }
        let px16 = vec![40000u16; 5 * 4];
        let v16 = ImageView { width: 5, height: 4, channels: 1, samples: SamplesRef::U16(&px16) };
        let out = imresize(&v16, 0.5).unwrap();
        assert_eq!(out.samples, Samples::U16(vec![40000; 3 * 2]));
    }

    #[test]
    fn scale_one_is_identity() {
        let px: Vec<u8> = (0..9 * 5 * 2).map(|i| (i * 37 % 256) as u8).collect();
        let out = imresize(&view(9, 5, 2, &px), 1.0).unwrap();
        assert_eq!(out.samples, Samples::U8(px));
    }

    #[test]
    fn one_pixel_images_and_bad_requests() {
        let out = imresize(&view(1, 1, 1, &[200]), 4.0).unwrap();
        assert_eq!(out.samples, Samples::U8(vec![200; 16]));
        let out = imresize(&view(1, 1, 1, &[200]), 0.25).unwrap();
        assert_eq!(out.samples, Samples::U8(vec![200]));
        assert!(imresize(&view(1, 1, 1, &[200]), 0.0).is_err());
        assert!(imresize(&view(1, 1, 1, &[200]), f64::NAN).is_err());
        assert!(imresize(&view(2, 1, 1, &[200]), 2.0).is_err(), "sample count mismatch");
        assert!(modcrop(&view(1, 1, 1, &[1]), 2).is_err());
        let m = modcrop(&view(3, 2, 1, &[1, 2, 3, 4, 5, 6]), 2).unwrap();
        assert_eq!((m.width, m.height, m.samples), (2, 2, Samples::U8(vec![1, 2, 4, 5])));
    }
}
