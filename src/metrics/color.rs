//! Planes of f64 samples on the 0..255 scale, and the MATLAB `rgb2ycbcr` luma the papers score.

use crate::error::{Error, Result};
use crate::io::image::{ImageView, SamplesRef};

/// One channel of an image as f64 values on the 0..255 scale (16-bit samples are divided by 257,
/// which maps 65535 to 255 exactly).
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
}

impl Plane {
    /// Drop `border` pixels on every side (the papers' "shave"); an error if nothing is left.
    pub fn crop(&self, border: usize) -> Result<Plane> {
        if border == 0 {
            return Ok(self.clone());
        }
        if self.width <= 2 * border || self.height <= 2 * border {
            return Err(Error::Usage(format!(
                "cropping {border} pixels from each side of a {}x{} image leaves nothing",
                self.width, self.height
            )));
        }
        let (w, h) = (self.width - 2 * border, self.height - 2 * border);
        let mut data = Vec::with_capacity(w * h);
        for y in border..border + h {
            data.extend_from_slice(&self.data[y * self.width + border..][..w]);
        }
        Ok(Plane { width: w, height: h, data })
    }
}

fn samples_255(img: &ImageView) -> Result<Vec<f64>> {
    img.checked_dims()?;
    Ok(match img.samples {
        SamplesRef::U8(s) => s.iter().map(|&v| v as f64).collect(),
        SamplesRef::U16(s) => s.iter().map(|&v| v as f64 / 257.0).collect(),
    })
}

/// Whether an image is gray (1 channel, or gray + alpha).
pub fn is_gray(img: &ImageView) -> bool {
    img.channels <= 2
}

/// The Y plane as the papers compute it: for colour images MATLAB `rgb2ycbcr`'s
/// `Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255` with R, G, B in 0..255, unrounded; gray
/// images are taken as Y directly (what MATLAB evaluation code does with Set14's `bridge`).
/// Alpha is ignored.
pub fn y_plane(img: &ImageView) -> Result<Plane> {
    let v = samples_255(img)?;
    let c = img.channels as usize;
    let data = if is_gray(img) {
        v.chunks_exact(c).map(|p| p[0]).collect()
    } else {
        v.chunks_exact(c).map(|p| 16.0 + (65.481 * p[0] + 128.553 * p[1] + 24.966 * p[2]) / 255.0).collect()
    };
    Ok(Plane { width: img.width as usize, height: img.height as usize, data })
}

/// The R, G and B planes (a gray image gives its plane three times). Alpha is ignored.
pub fn rgb_planes(img: &ImageView) -> Result<[Plane; 3]> {
    let v = samples_255(img)?;
    let c = img.channels as usize;
    let (w, h) = (img.width as usize, img.height as usize);
    let plane = |k: usize| {
        let k = if is_gray(img) { 0 } else { k };
        Plane { width: w, height: h, data: v.chunks_exact(c).map(|p| p[k]).collect() }
    };
    Ok([plane(0), plane(1), plane(2)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_the_matlab_formula_and_gray_is_y() {
        let px = [255u8, 255, 255, 0, 0, 0, 10, 200, 30];
        let img = ImageView { width: 3, height: 1, channels: 3, samples: SamplesRef::U8(&px) };
        let y = y_plane(&img).unwrap();
        assert!((y.data[0] - 235.0).abs() < 1e-12);
        assert_eq!(y.data[1], 16.0);
        assert!(
            (y.data[2] - (16.0 + (65.481 * 10.0 + 128.553 * 200.0 + 24.966 * 30.0) / 255.0)).abs() < 1e-12
        );
        let g = [7u8, 255, 9, 1];
        let gray = ImageView { width: 2, height: 1, channels: 2, samples: SamplesRef::U8(&g) };
        assert_eq!(y_plane(&gray).unwrap().data, [7.0, 9.0]);
        let g16 = [65535u16, 257];
        let gray16 = ImageView { width: 2, height: 1, channels: 1, samples: SamplesRef::U16(&g16) };
        assert_eq!(y_plane(&gray16).unwrap().data, [255.0, 1.0]);
        let rgb = rgb_planes(&gray).unwrap();
        assert!(rgb.iter().all(|p| p.data == [7.0, 9.0]));
    }

    #[test]
    fn crop_shaves_every_side() {
        let p = Plane { width: 4, height: 3, data: (0..12).map(|v| v as f64).collect() };
        assert_eq!(p.crop(1).unwrap(), Plane { width: 2, height: 1, data: vec![5.0, 6.0] });
        assert!(p.crop(2).is_err());
        assert_eq!(p.crop(0).unwrap(), p);
    }
}
