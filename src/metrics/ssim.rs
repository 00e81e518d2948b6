//! SSIM of Wang et al. 2004 (`ssim_index.m`): 11x11 Gaussian window with sigma 1.5 (normalised),
//! K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering (the map is (H-10) x (W-10)), and the mean
//! of the map. The window is separable, so the local means are filtered along rows and then
//! columns in f64.

use super::Plane;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Side of the SSIM window.
pub const WINDOW: usize = 11;

/// The normalised 1-D Gaussian (sigma 1.5) whose outer product is the SSIM window.
pub fn gaussian_window() -> [f64; WINDOW] {
    let mut g = [0.0; WINDOW];
    let half = (WINDOW - 1) as f64 / 2.0;
    for (i, v) in g.iter_mut().enumerate() {
        let x = i as f64 - half;
        *v = (-(x * x) / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = g.iter().sum();
    g.map(|v| v / s)
}

/// Horizontal 'valid' pass for five quantities at once (interleaved): a, b, a², b², ab.
fn horizontal(a: &Plane, b: &Plane, g: &[f64; WINDOW]) -> Vec<f64> {
    let (w, h) = (a.width, a.height);
    let ow = w - WINDOW + 1;
    let mut horiz = vec![0.0f64; h * ow * 5];
    horiz.par_chunks_mut(ow * 5).enumerate().for_each(|(y, out)| {
        let ra = &a.data[y * w..(y + 1) * w];
        let rb = &b.data[y * w..(y + 1) * w];
        for x in 0..ow {
            let mut s = [0.0f64; 5];
            for (k, &gk) in g.iter().enumerate() {
                let (va, vb) = (ra[x + k], rb[x + k]);
                s[0] += gk * va;
                s[1] += gk * vb;
                s[2] += gk * (va * va);
                s[3] += gk * (vb * vb);
                s[4] += gk * (va * vb);
            }
            out[x * 5..][..5].copy_from_slice(&s);
        }
    });
    horiz
}

/// Mean SSIM of two equally sized planes (0..255 scale); an error if they are smaller than the
/// 11x11 window.
pub fn ssim(a: &Plane, b: &Plane) -> Result<f64> {
    assert_eq!((a.width, a.height), (b.width, b.height));
    if a.width < WINDOW || a.height < WINDOW {
        return Err(Error::Usage(format!(
            "SSIM needs at least {WINDOW}x{WINDOW} pixels after the border crop, not {}x{}",
            a.width, a.height
        )));
    }
    let c1 = (0.01f64 * 255.0).powi(2);
    let c2 = (0.03f64 * 255.0).powi(2);
    let g = gaussian_window();
    let horiz = horizontal(a, b, &g);
    let (ow, oh) = (a.width - WINDOW + 1, a.height - WINDOW + 1);
    // Vertical pass and the map, one output row per task; row sums are added in row order so
    // the result does not depend on the thread count.
    let rows: Vec<f64> = (0..oh)
        .into_par_iter()
        .map(|y| {
            let mut row = 0.0f64;
            for x in 0..ow {
                let mut m = [0.0f64; 5];
                for (k, &gk) in g.iter().enumerate() {
                    let h5 = &horiz[((y + k) * ow + x) * 5..][..5];
                    for q in 0..5 {
                        m[q] += gk * h5[q];
                    }
                }
                let [m1, m2, e11, e22, e12] = m;
                let s11 = e11 - m1 * m1;
                let s22 = e22 - m2 * m2;
                let s12 = e12 - m1 * m2;
                row +=
                    ((2.0 * m1 * m2 + c1) * (2.0 * s12 + c2)) / ((m1 * m1 + m2 * m2 + c1) * (s11 + s22 + c2));
            }
            row
        })
        .collect();
    Ok(rows.iter().sum::<f64>() / (ow * oh) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: usize, h: usize, seed: u64) -> Plane {
        let mut x = seed | 1;
        let data = (0..w * h)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 256) as f64
            })
            .collect();
        Plane { width: w, height: h, data }
    }

    #[test]
    fn window_is_normalised_and_symmetric() {
        let g = gaussian_window();
        assert!((g.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        for i in 0..WINDOW {
            assert_eq!(g[i], g[WINDOW - 1 - i]);
        }
    }

    #[test]
    fn identical_planes_score_one_and_it_is_symmetric() {
        let a = noise(23, 17, 3);
        let b = noise(23, 17, 4);
        assert!((ssim(&a, &a).unwrap() - 1.0).abs() < 1e-12);
        let s = ssim(&a, &b).unwrap();
        assert!(s < 0.2 && s > -1.0);
        assert_eq!(s, ssim(&b, &a).unwrap());
        assert!(ssim(&noise(10, 30, 1), &noise(10, 30, 2)).is_err());
    }

    #[test]
    fn separable_filter_matches_direct_2d_window() {
        // The direct definition: 2-D window = outer(g, g), one accumulation per map pixel.
        let (a, b) = (noise(14, 12, 5), noise(14, 12, 6));
        let g = gaussian_window();
        let (ow, oh) = (4, 2);
        let mut want = 0.0;
        let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
        for y in 0..oh {
            for x in 0..ow {
                let mut m = [0.0f64; 5];
                for i in 0..11 {
                    for j in 0..11 {
                        let wgt = g[i] * g[j];
                        let (va, vb) = (a.data[(y + i) * 14 + x + j], b.data[(y + i) * 14 + x + j]);
                        m[0] += wgt * va;
                        m[1] += wgt * vb;
                        m[2] += wgt * va * va;
                        m[3] += wgt * vb * vb;
                        m[4] += wgt * va * vb;
                    }
                }
                let (s11, s22, s12) = (m[2] - m[0] * m[0], m[3] - m[1] * m[1], m[4] - m[0] * m[1]);
                want += ((2.0 * m[0] * m[1] + c1) * (2.0 * s12 + c2))
                    / ((m[0] * m[0] + m[1] * m[1] + c1) * (s11 + s22 + c2));
            }
        }
        want /= (ow * oh) as f64;
        assert!((ssim(&a, &b).unwrap() - want).abs() < 1e-12);
    }
}
