//! Image quality metrics exactly as the super-resolution papers compute them (see
//! `../shared/data/PROTOCOL.md` on developer machines): PSNR and SSIM on the Y channel of MATLAB's
//! BT.601 `rgb2ycbcr` (or on RGB), after cropping a border, in f64; and the evaluation of a whole
//! benchmark folder against its ground truth.

pub mod color;
pub mod eval;
pub mod psnr;
pub mod ssim;

pub use color::Plane;

use crate::error::{Error, Result};
use crate::io::image::ImageView;

/// Which channels are scored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Channels {
    /// Y of BT.601 (gray images as they are): the SISR and Vid4 tables.
    #[default]
    Y,
    /// R, G and B: PSNR over the three jointly, SSIM per channel and averaged (BasicSR's RGB
    /// numbers, REDS4).
    Rgb,
}

/// PSNR (dB) and SSIM of one image, or a mean of several.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    pub psnr: f64,
    pub ssim: f64,
}

impl Score {
    /// Arithmetic mean (the papers average per-image PSNR, not MSE); `None` for no scores.
    pub fn mean(scores: &[Score]) -> Option<Score> {
        if scores.is_empty() {
            return None;
        }
        let n = scores.len() as f64;
        Some(Score {
            psnr: scores.iter().map(|s| s.psnr).sum::<f64>() / n,
            ssim: scores.iter().map(|s| s.ssim).sum::<f64>() / n,
        })
    }
}

/// Score `sr` against `hr` (same size; alpha ignored) after cropping `crop` pixels from every side.
pub fn score(sr: &ImageView, hr: &ImageView, crop: usize, channels: Channels) -> Result<Score> {
    if (sr.width, sr.height) != (hr.width, hr.height) {
        return Err(Error::Usage(format!(
            "images differ in size: {}x{} and {}x{}",
            sr.width, sr.height, hr.width, hr.height
        )));
    }
    match channels {
        Channels::Y => {
            let a = color::y_plane(sr)?.crop(crop)?;
            let b = color::y_plane(hr)?.crop(crop)?;
            let p = psnr::psnr(std::slice::from_ref(&a), std::slice::from_ref(&b));
            Ok(Score { psnr: p, ssim: ssim::ssim(&a, &b)? })
        }
        Channels::Rgb => {
            let a = color::rgb_planes(sr)?.map(|p| p.crop(crop));
            let b = color::rgb_planes(hr)?.map(|p| p.crop(crop));
            let a: Vec<Plane> = a.into_iter().collect::<Result<_>>()?;
            let b: Vec<Plane> = b.into_iter().collect::<Result<_>>()?;
            let p = psnr::psnr(&a, &b);
            let mut s = 0.0;
            for (x, y) in a.iter().zip(&b) {
                s += ssim::ssim(x, y)?;
            }
            Ok(Score { psnr: p, ssim: s / 3.0 })
        }
    }
}
