//! Interpolating resizers used outside the networks (alpha channels, non-native output scales).

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

#[cfg(test)]
mod tests {
    use super::*;

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
