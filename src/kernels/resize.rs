//! Interpolating resizers used outside the networks: bicubic for alpha channels, and a separable
//! Lanczos-3 resampler for output scales other than a model's own (`--outscale`, as Real-ESRGAN's
//! `--outscale` resizes its output with OpenCV's Lanczos).

use crate::io::image::{Samples, SamplesRef};
use rayon::prelude::*;

/// Keys' cubic convolution kernel with a = -0.5 (the MATLAB/PIL bicubic).
#[inline]
pub fn cubic(x: f32) -> f32 {
    let x = x.abs();
    if x <= 1.0 {
        (1.5 * x - 2.5) * x * x + 1.0
    } else if x < 2.0 {
        ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    } else {
        0.0
    }
}

/// Four source indices (clamped to the edge) and weights for output coordinate `o` when
/// upscaling by an integer factor `s` with pixel centres aligned (half-pixel convention).
#[inline]
fn taps(o: usize, s: usize, n: usize) -> ([usize; 4], [f32; 4]) {
    let u = (o as f32 + 0.5) / s as f32 - 0.5;
    let f = u.floor();
    let mut idx = [0usize; 4];
    let mut wts = [0f32; 4];
    for k in 0..4 {
        let j = f as isize - 1 + k as isize;
        idx[k] = j.clamp(0, n as isize - 1) as usize;
        wts[k] = cubic(u - j as f32);
    }
    (idx, wts)
}

/// Upscale channel `ch` of an interleaved `w x h x c` image by `s` into the same channel of the
/// interleaved output (which has the same channel count), converting between bit depths.
pub fn bicubic_channel(
    src: SamplesRef,
    w: usize,
    h: usize,
    c: usize,
    ch: usize,
    s: usize,
    dst: &mut Samples,
) {
    let (ow, oh) = (w * s, h * s);
    let xt: Vec<_> = (0..ow).map(|x| taps(x, s, w)).collect();
    let get = |y: usize, x: usize| -> f32 {
        match src {
            SamplesRef::U8(p) => p[(y * w + x) * c + ch] as f32 / 255.0,
            SamplesRef::U16(p) => p[(y * w + x) * c + ch] as f32 / 65535.0,
        }
    };
    let value = |y: usize, x: usize| -> f32 {
        let _ = oh;
        let (yi, yw) = taps(y, s, h);
        let (xi, xw) = xt[x];
        let mut acc = 0.0f32;
        for (a, &sy) in yi.iter().enumerate() {
            let mut row = 0.0f32;
            for (b, &sx) in xi.iter().enumerate() {
                row += xw[b] * get(sy, sx);
            }
            acc += yw[a] * row;
        }
        acc
    };
    match dst {
        Samples::U8(o) => o.par_chunks_mut(ow * c).enumerate().for_each(|(y, row)| {
            for x in 0..ow {
                row[x * c + ch] = crate::pipeline::upscale::quantize(value(y, x), 255.0) as u8;
            }
        }),
        Samples::U16(o) => o.par_chunks_mut(ow * c).enumerate().for_each(|(y, row)| {
            for x in 0..ow {
                row[x * c + ch] = crate::pipeline::upscale::quantize(value(y, x), 65535.0) as u16;
            }
        }),
    }
}

/// Lanczos window of order 3: `sinc(x)·sinc(x/3)` for |x| < 3.
#[inline]
pub fn lanczos3(x: f64) -> f64 {
    let x = x.abs();
    if x < 1e-12 {
        1.0
    } else if x < 3.0 {
        let px = std::f64::consts::PI * x;
        3.0 * px.sin() * (px / 3.0).sin() / (px * px)
    } else {
        0.0
    }
}

/// The source taps of every output coordinate along one axis: `(first index, weights)`, indices
/// clamped to the image (edge pixels repeat), weights normalised to sum to 1. Pixel centres are
/// aligned (`src = (dst + 0.5)·n/m - 0.5`); when shrinking, the kernel is stretched by `n/m` so it
/// averages every source pixel it covers (antialiasing, as PIL and libvips do).
pub fn lanczos_taps(n: usize, m: usize) -> Vec<(Vec<usize>, Vec<f32>)> {
    let ratio = n as f64 / m as f64;
    let stretch = ratio.max(1.0);
    let support = 3.0 * stretch;
    (0..m)
        .map(|o| {
            let centre = (o as f64 + 0.5) * ratio - 0.5;
            let lo = (centre - support).floor() as isize + 1;
            let hi = (centre + support).ceil() as isize - 1;
            let mut idx = Vec::new();
            let mut wts = Vec::new();
            for j in lo..=hi {
                let wgt = lanczos3((j as f64 - centre) / stretch);
                if wgt != 0.0 {
                    idx.push(j.clamp(0, n as isize - 1) as usize);
                    wts.push(wgt);
                }
            }
            let sum: f64 = wts.iter().sum();
            (idx, wts.iter().map(|w| (w / sum) as f32).collect())
        })
        .collect()
}

/// Resample an interleaved `w x h x c` image to `ow x oh` with separable Lanczos-3 (see
/// [`lanczos_taps`]), every channel alike (alpha included), writing `depth`-bit samples (8 or 16).
/// Rows run in parallel; each output value's sums run in a fixed order.
pub fn lanczos_resample(
    src: SamplesRef,
    w: usize,
    h: usize,
    c: usize,
    ow: usize,
    oh: usize,
    depth: u8,
) -> Samples {
    let (xt, yt) = (lanczos_taps(w, ow), lanczos_taps(h, oh));
    let get = |i: usize| -> f32 {
        match src {
            SamplesRef::U8(p) => p[i] as f32 * (1.0 / 255.0),
            SamplesRef::U16(p) => p[i] as f32 * (1.0 / 65535.0),
        }
    };
    // Horizontal pass into float rows, then vertical pass straight into the output.
    let mut tmp = vec![0.0f32; h * ow * c];
    tmp.par_chunks_mut(ow * c).enumerate().for_each(|(y, row)| {
        for (x, (idx, wts)) in xt.iter().enumerate() {
            for ch in 0..c {
                let mut acc = 0.0f32;
                for (&i, &wt) in idx.iter().zip(wts) {
                    acc += wt * get((y * w + i) * c + ch);
                }
                row[x * c + ch] = acc;
            }
        }
    });
    let value = |y: usize, i: usize| -> f32 {
        let (idx, wts) = &yt[y];
        let mut acc = 0.0f32;
        for (&r, &wt) in idx.iter().zip(wts) {
            acc += wt * tmp[r * ow * c + i];
        }
        acc
    };
    match depth {
        8 => {
            let mut out = vec![0u8; ow * oh * c];
            out.par_chunks_mut(ow * c).enumerate().for_each(|(y, row)| {
                for (i, v) in row.iter_mut().enumerate() {
                    *v = crate::pipeline::upscale::quantize(value(y, i), 255.0) as u8;
                }
            });
            Samples::U8(out)
        }
        _ => {
            let mut out = vec![0u16; ow * oh * c];
            out.par_chunks_mut(ow * c).enumerate().for_each(|(y, row)| {
                for (i, v) in row.iter_mut().enumerate() {
                    *v = crate::pipeline::upscale::quantize(value(y, i), 65535.0) as u16;
                }
            });
            Samples::U16(out)
        }
    }
}

/// Scalar reference: the same taps applied as one 2-D sum in f64 (tests).
pub fn lanczos_reference(src: &[f32], w: usize, h: usize, c: usize, ow: usize, oh: usize) -> Vec<f32> {
    let (xt, yt) = (lanczos_taps(w, ow), lanczos_taps(h, oh));
    let mut out = vec![0.0f32; ow * oh * c];
    for y in 0..oh {
        for x in 0..ow {
            for ch in 0..c {
                let mut acc = 0.0f64;
                for (&r, &wy) in yt[y].0.iter().zip(&yt[y].1) {
                    for (&q, &wx) in xt[x].0.iter().zip(&xt[x].1) {
                        acc += wy as f64 * wx as f64 * src[(r * w + q) * c + ch] as f64;
                    }
                }
                out[(y * ow + x) * c + ch] = acc as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_f32(s: &Samples) -> Vec<f32> {
        match s {
            Samples::U8(v) => v.iter().map(|&x| x as f32 / 255.0).collect(),
            Samples::U16(v) => v.iter().map(|&x| x as f32 / 65535.0).collect(),
        }
    }

    #[test]
    fn lanczos_matches_the_2d_reference_and_keeps_constants() {
        for (w, h, c, ow, oh) in
            [(7, 5, 3, 16, 11), (20, 13, 4, 7, 5), (9, 9, 1, 9, 9), (1, 1, 2, 3, 2), (33, 2, 3, 10, 1)]
        {
            let src: Vec<u16> = (0..w * h * c).map(|i| ((i * 7919) % 65536) as u16).collect();
            let srcf: Vec<f32> = src.iter().map(|&v| v as f32 / 65535.0).collect();
            let got = as_f32(&lanczos_resample(SamplesRef::U16(&src), w, h, c, ow, oh, 16));
            let want = lanczos_reference(&srcf, w, h, c, ow, oh);
            for (g, r) in got.iter().zip(&want) {
                assert!(
                    (g - r.clamp(0.0, 1.0)).abs() <= 1.0 / 65535.0 + 1e-6,
                    "{w}x{h}->{ow}x{oh}: {g} vs {r}"
                );
            }
            let flat = vec![40000u16; w * h * c];
            let got = lanczos_resample(SamplesRef::U16(&flat), w, h, c, ow, oh, 16);
            assert_eq!(got, Samples::U16(vec![40000; ow * oh * c]));
        }
    }

    #[test]
    fn same_size_is_identity_and_shrinking_averages() {
        let src: Vec<u8> = (0..12 * 9 * 3).map(|i| (i * 37 % 256) as u8).collect();
        assert_eq!(lanczos_resample(SamplesRef::U8(&src), 12, 9, 3, 12, 9, 8), Samples::U8(src.clone()));
        // A one-pixel checkerboard shrunk 4x is flat grey: the kernel is stretched over it.
        let board: Vec<u8> = (0..64 * 64).map(|i| if (i % 64 + i / 64) % 2 == 0 { 0 } else { 255 }).collect();
        let Samples::U8(small) = lanczos_resample(SamplesRef::U8(&board), 64, 64, 1, 16, 16, 8) else {
            unreachable!()
        };
        assert!(small.iter().all(|&v| (120..=135).contains(&v)), "{small:?}");
    }

    #[test]
    fn constant_stays_constant_and_kernel_sums_to_one() {
        for s in 1..5 {
            for o in 0..4 * s {
                let (_, w) = taps(o, s, 100);
                assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            }
        }
        let src = vec![200u8; 5 * 3 * 2];
        let mut dst = Samples::U8(vec![0; 15 * 9 * 2]);
        bicubic_channel(SamplesRef::U8(&src), 5, 3, 2, 1, 3, &mut dst);
        let Samples::U8(d) = dst else { unreachable!() };
        assert!(d.chunks(2).all(|p| p[1] == 200 && p[0] == 0));
    }

    #[test]
    fn integer_scale_one_is_identity() {
        let src: Vec<u16> = (0..12).map(|i| i * 5000).collect();
        let mut dst = Samples::U16(vec![0; 12]);
        bicubic_channel(SamplesRef::U16(&src), 4, 3, 1, 0, 1, &mut dst);
        assert_eq!(dst, Samples::U16(src));
    }
}
