//! The "BD" degradation of the video super-resolution papers (DUF, and BasicSR's
//! `duf_downsample` that EDVR/BasicVSR/TDAN data follow): a 13x13 Gaussian blur with
//! sigma = 0.4·scale = 1.6, reflect padding (no edge duplication), then every 4th pixel from
//! offset 0. Computed in f64 and rounded once (half up) at the end.
//!
//! The kernel is built as SciPy's `gaussian_filter` of a centred delta builds it (BasicSR's
//! `generate_gaussian_kernel`): the outer product of a normalised 1-D Gaussian of radius
//! `int(4·sigma + 0.5)`.

use super::imresize::{from_f64, pairwise_sum, to_f64};
use crate::error::{Error, Result};
use crate::io::image::ImageView;
use crate::pipeline::OutputImage;
use rayon::prelude::*;

/// Side of the BD blur kernel (DUF's `filter_size = 13`).
pub const BD_KERNEL_SIZE: usize = 13;

/// SciPy's `_gaussian_kernel1d(sigma, radius)`: `exp(-0.5/sigma² · x²)`, normalised by its sum
/// in numpy's summation order.
pub fn gaussian_1d(sigma: f64, radius: usize) -> Vec<f64> {
    let s2 = sigma * sigma;
    let r = radius as i64;
    let phi: Vec<f64> = (-r..=r).map(|x| (-0.5 / s2 * (x * x) as f64).exp()).collect();
    let sum = pairwise_sum(&phi);
    phi.iter().map(|v| v / sum).collect()
}

/// The 13x13 BD kernel for `scale` (row-major): `k[i][j] = g[i]·g[j]`, which is exactly what
/// filtering a delta along rows and then columns produces.
pub fn bd_kernel(scale: usize) -> Vec<f64> {
    let sigma = 0.4 * scale as f64;
    let g = gaussian_1d(sigma, BD_KERNEL_SIZE / 2);
    let mut k = Vec::with_capacity(BD_KERNEL_SIZE * BD_KERNEL_SIZE);
    for &gi in &g {
        for &gj in &g {
            k.push(gj * gi);
        }
    }
    k
}

/// numpy `pad(mode='reflect')` index: the edge sample is not repeated (`c b | a b c`).
#[inline]
pub fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m >= n as isize { period - m } else { m }) as usize
}

/// BD x4 downscale of an 8- or 16-bit image (every channel alike). Only scale 4 is defined by
/// the papers; other scales are an error.
pub fn bd_downscale(img: &ImageView, scale: usize) -> Result<OutputImage> {
    if scale != 4 {
        return Err(Error::Usage(format!(
            "the BD degradation is defined for x4 only (13x13 Gaussian, sigma 1.6), not x{scale}"
        )));
    }
    let (w, h, c) = img.checked_dims()?;
    let (ow, oh) = (w.div_ceil(scale), h.div_ceil(scale));
    let (data, max) = to_f64(img);
    let k = bd_kernel(scale);
    let n = BD_KERNEL_SIZE;
    let r = (n / 2) as isize;
    let xs: Vec<Vec<usize>> = (0..ow)
        .map(|ox| (0..n).map(|j| reflect((ox * scale) as isize + j as isize - r, w)).collect())
        .collect();
    let mut out = vec![0f64; ow * oh * c];
    out.par_chunks_mut(ow * c).enumerate().for_each(|(oy, row)| {
        let ys: Vec<usize> = (0..n).map(|i| reflect((oy * scale) as isize + i as isize - r, h)).collect();
        for (ox, xi) in xs.iter().enumerate() {
            for ch in 0..c {
                // Raster order over the kernel, one f64 accumulator: SciPy's correlate order.
                let mut acc = 0.0;
                for (i, &y) in ys.iter().enumerate() {
                    let line = &data[y * w * c..];
                    for (j, &x) in xi.iter().enumerate() {
                        acc += line[x * c + ch] * k[i * n + j];
                    }
                }
                row[ox * c + ch] = (acc + 0.5).floor().clamp(0.0, max);
            }
        }
    });
    Ok(OutputImage { width: ow as u32, height: oh as u32, channels: c as u8, samples: from_f64(&out, img) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::image::{Samples, SamplesRef};

    #[test]
    fn reflect_matches_numpy_convention() {
        // numpy.pad(arange(4), 6, 'reflect') and numpy.pad(arange(3), 7, 'reflect')
        let got: Vec<usize> = (-6..10).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3]);
        let got: Vec<usize> = (-7..10).map(|i| reflect(i, 3)).collect();
        assert_eq!(got, [1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1]);
        assert!((-20..20).all(|i| reflect(i, 1) == 0));
        assert_eq!((-3..5).map(|i| reflect(i, 2)).collect::<Vec<_>>(), [1, 0, 1, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn kernel_is_normalised_and_symmetric() {
        let k = bd_kernel(4);
        assert_eq!(k.len(), 169);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for i in 0..13 {
            for j in 0..13 {
                assert_eq!(k[i * 13 + j], k[j * 13 + i]);
                assert_eq!(k[i * 13 + j], k[(12 - i) * 13 + j]);
            }
        }
        assert!(k[6 * 13 + 6] > k[6 * 13 + 5]);
    }

    #[test]
    fn constant_stays_constant_and_other_scales_are_errors() {
        let px = vec![123u8; 9 * 6 * 3];
        let v = ImageView { width: 9, height: 6, channels: 3, samples: SamplesRef::U8(&px) };
        let out = bd_downscale(&v, 4).unwrap();
        assert_eq!((out.width, out.height), (3, 2));
        assert_eq!(out.samples, Samples::U8(vec![123; 3 * 2 * 3]));
        for s in [1, 2, 3, 8] {
            assert!(matches!(bd_downscale(&v, s), Err(Error::Usage(_))));
        }
    }
}
