//! Self-ensemble ("EDSR+", test-time augmentation): run a network on the 8 dihedral transforms
//! of its input (flips and transposes), transform each result back, and average.
//!
//! The transforms are pure data movement, so applying one and then its inverse gives back the
//! input bit for bit. The average is taken in f32 in a fixed order (the order of
//! [`Ensemble::transforms`]), so results do not depend on tiling or thread count. The pipeline
//! applies it per tile (see [`crate::pipeline::Upscaler`]); [`run_hwc`] is the whole-image form
//! for tests and simple embedders.

use crate::error::Result;
use crate::graph::Arena;
use crate::models::Network;

/// One of the 8 symmetries of the square: `transpose ∘ flip_h ∘ flip_v` applied to an image
/// (first a vertical flip, then a horizontal flip, then a transpose, each optional).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dihedral {
    flip_v: bool,
    flip_h: bool,
    transpose: bool,
}

impl Dihedral {
    pub const IDENTITY: Dihedral = Dihedral::new(false, false, false);
    /// Upside down.
    pub const FLIP_V: Dihedral = Dihedral::new(true, false, false);
    /// Mirror left-right.
    pub const FLIP_H: Dihedral = Dihedral::new(false, true, false);
    pub const ROT180: Dihedral = Dihedral::new(true, true, false);
    pub const TRANSPOSE: Dihedral = Dihedral::new(false, false, true);
    /// 90° clockwise.
    pub const ROT90: Dihedral = Dihedral::new(true, false, true);
    /// 90° counter-clockwise.
    pub const ROT270: Dihedral = Dihedral::new(false, true, true);
    /// Transpose across the other diagonal.
    pub const ANTI_TRANSPOSE: Dihedral = Dihedral::new(true, true, true);

    /// All 8, in EDSR's `forward_x8` order: identity, v, h, hv, then each of those transposed.
    pub const ALL: [Dihedral; 8] = [
        Dihedral::IDENTITY,
        Dihedral::FLIP_V,
        Dihedral::FLIP_H,
        Dihedral::ROT180,
        Dihedral::TRANSPOSE,
        Dihedral::ROT90,
        Dihedral::ROT270,
        Dihedral::ANTI_TRANSPOSE,
    ];

    /// The 4 without a transpose (flips only, as TDAN's evaluation uses).
    pub const FLIPS: [Dihedral; 4] =
        [Dihedral::IDENTITY, Dihedral::FLIP_V, Dihedral::FLIP_H, Dihedral::ROT180];

    pub const fn new(flip_v: bool, flip_h: bool, transpose: bool) -> Self {
        Dihedral { flip_v, flip_h, transpose }
    }

    pub fn flip_v(self) -> bool {
        self.flip_v
    }

    pub fn flip_h(self) -> bool {
        self.flip_h
    }

    pub fn transposes(self) -> bool {
        self.transpose
    }

    pub fn name(self) -> &'static str {
        match (self.flip_v, self.flip_h, self.transpose) {
            (false, false, false) => "identity",
            (true, false, false) => "flip-v",
            (false, true, false) => "flip-h",
            (true, true, false) => "rot180",
            (false, false, true) => "transpose",
            (true, false, true) => "rot90",
            (false, true, true) => "rot270",
            (true, true, true) => "anti-transpose",
        }
    }

    /// The transform that undoes this one. Flips commute with each other, and transposing turns a
    /// vertical flip into a horizontal one, so only the two rotations are not their own inverse.
    pub fn invert(self) -> Dihedral {
        if self.transpose {
            Dihedral::new(self.flip_h, self.flip_v, true)
        } else {
            self
        }
    }

    /// Size `(h, w)` of the transform of an `h x w` image.
    pub fn dims(self, h: usize, w: usize) -> (usize, usize) {
        if self.transpose {
            (w, h)
        } else {
            (h, w)
        }
    }

    /// For pixel `(y, x)` of the transformed image, the pixel of the `h x w` source it comes from.
    #[inline]
    pub fn source(self, y: usize, x: usize, h: usize, w: usize) -> (usize, usize) {
        let (a, b) = if self.transpose { (x, y) } else { (y, x) };
        (if self.flip_v { h - 1 - a } else { a }, if self.flip_h { w - 1 - b } else { b })
    }

    /// For pixel `(y, x)` of the `h x w` source, where it lands in the transformed image.
    #[inline]
    pub fn target(self, y: usize, x: usize, h: usize, w: usize) -> (usize, usize) {
        let (th, tw) = self.dims(h, w);
        self.invert().source(y, x, th, tw)
    }

    /// Transform an interleaved `h x w x c` image (any sample type); returns the new samples and
    /// their `(h, w)`.
    pub fn apply<T: Copy>(self, src: &[T], h: usize, w: usize, c: usize) -> (Vec<T>, usize, usize) {
        assert_eq!(src.len(), h * w * c, "samples for an {h}x{w}x{c} image");
        let (th, tw) = self.dims(h, w);
        let mut out = Vec::with_capacity(src.len());
        for y in 0..th {
            for x in 0..tw {
                let (sy, sx) = self.source(y, x, h, w);
                out.extend_from_slice(&src[(sy * w + sx) * c..][..c]);
            }
        }
        (out, th, tw)
    }
}

/// Which transforms a self-ensemble runs. The default is plain inference (identity only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ensemble {
    transforms: Vec<Dihedral>,
}

impl Default for Ensemble {
    fn default() -> Self {
        Ensemble::none()
    }
}

impl Ensemble {
    /// Plain inference.
    pub fn none() -> Self {
        Ensemble { transforms: vec![Dihedral::IDENTITY] }
    }

    /// All 8 transforms (x8 compute).
    pub fn x8() -> Self {
        Ensemble { transforms: Dihedral::ALL.to_vec() }
    }

    /// The 4 flips (x4 compute).
    pub fn flips() -> Self {
        Ensemble { transforms: Dihedral::FLIPS.to_vec() }
    }

    /// `--tta-transforms N`: 1 (off), 4 or 8.
    pub fn with_count(n: usize) -> Result<Self> {
        match n {
            1 => Ok(Ensemble::none()),
            4 => Ok(Ensemble::flips()),
            8 => Ok(Ensemble::x8()),
            _ => Err(crate::Error::Usage(format!("self-ensemble takes 4 or 8 transforms, not {n}"))),
        }
    }

    /// Any non-empty list of distinct transforms, averaged in the given order.
    pub fn custom(transforms: Vec<Dihedral>) -> Result<Self> {
        let distinct = transforms.iter().enumerate().all(|(i, t)| !transforms[..i].contains(t));
        if transforms.is_empty() || !distinct {
            return Err(crate::Error::Usage("a self-ensemble needs distinct transforms".into()));
        }
        Ok(Ensemble { transforms })
    }

    pub fn transforms(&self) -> &[Dihedral] {
        &self.transforms
    }

    /// Whether this is plain inference.
    pub fn is_plain(&self) -> bool {
        self.transforms == [Dihedral::IDENTITY]
    }

    /// Network runs per tile.
    pub fn len(&self) -> usize {
        self.transforms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transforms.is_empty()
    }
}

/// Run `net` on dense HWC pixels in [0,1] under a self-ensemble and return the averaged dense
/// HWC output (unclamped): each transform's output is transformed back, the results are summed
/// in the ensemble's order and divided by their number.
pub fn run_hwc(
    net: &Network,
    arena: &mut Arena,
    x: &[f32],
    h: usize,
    w: usize,
    ens: &Ensemble,
) -> Result<Vec<f32>> {
    let cin = net.in_channels();
    let s = net.scale();
    let mut acc: Option<Vec<f32>> = None;
    for &d in ens.transforms() {
        let (tx, th, tw) = d.apply(x, h, w, cin);
        let y = net.run_hwc(&tx, th, tw, arena)?;
        let cout = y.len() / (th * s * tw * s);
        let (back, _, _) = d.invert().apply(&y, th * s, tw * s, cout);
        match &mut acc {
            None => acc = Some(back),
            Some(a) => a.iter_mut().zip(&back).for_each(|(a, b)| *a += b),
        }
    }
    let inv = 1.0 / ens.len() as f32;
    let mut out = acc.expect("an ensemble has at least one transform");
    out.iter_mut().for_each(|v| *v *= inv);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn named_transforms_move_pixels_as_named() {
        // 2x3 image, one channel:  a b c / d e f
        let img = [1, 2, 3, 4, 5, 6];
        let t = |d: Dihedral| d.apply(&img, 2, 3, 1);
        assert_eq!(t(Dihedral::IDENTITY), (img.to_vec(), 2, 3));
        assert_eq!(t(Dihedral::FLIP_V), (vec![4, 5, 6, 1, 2, 3], 2, 3));
        assert_eq!(t(Dihedral::FLIP_H), (vec![3, 2, 1, 6, 5, 4], 2, 3));
        assert_eq!(t(Dihedral::ROT180), (vec![6, 5, 4, 3, 2, 1], 2, 3));
        assert_eq!(t(Dihedral::TRANSPOSE), (vec![1, 4, 2, 5, 3, 6], 3, 2));
        // Clockwise: the left column read bottom-up becomes the top row.
        assert_eq!(t(Dihedral::ROT90), (vec![4, 1, 5, 2, 6, 3], 3, 2));
        assert_eq!(t(Dihedral::ROT270), (vec![3, 6, 2, 5, 1, 4], 3, 2));
        assert_eq!(t(Dihedral::ANTI_TRANSPOSE), (vec![6, 3, 5, 2, 4, 1], 3, 2));
        let names: Vec<&str> = Dihedral::ALL.iter().map(|d| d.name()).collect();
        assert_eq!(names.len(), 8);
        assert!(names.iter().enumerate().all(|(i, n)| !names[..i].contains(n)));
    }

    #[test]
    fn edsr_order_and_group_structure() {
        // EDSR forward_x8 builds [x, v, h, hv] and then their transposes: transform i is
        // t^(i>=4) ∘ h^(i%4>=2) ∘ v^(i%2==1).
        for (i, d) in Dihedral::ALL.iter().enumerate() {
            assert_eq!((d.flip_v(), d.flip_h(), d.transposes()), (i % 2 == 1, i % 4 >= 2, i >= 4));
        }
        for d in Dihedral::ALL {
            assert_eq!(d.invert().invert(), d);
        }
        assert_eq!(Dihedral::ROT90.invert(), Dihedral::ROT270);
        let img: Vec<u16> = (0..5 * 4).collect();
        // Two quarter turns are a half turn.
        let (r1, h1, w1) = Dihedral::ROT90.apply(&img, 5, 4, 1);
        let (r2, _, _) = Dihedral::ROT90.apply(&r1, h1, w1, 1);
        assert_eq!(r2, Dihedral::ROT180.apply(&img, 5, 4, 1).0);
    }

    proptest! {
        #[test]
        fn every_transform_round_trips_bit_exactly(
            h in 1usize..12, w in 1usize..12, c in 1usize..5, seed in any::<u64>(), k in 0usize..8
        ) {
            let mut x = seed | 1;
            let img: Vec<f32> = (0..h * w * c).map(|_| {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                f32::from_bits((x >> 32) as u32)
            }).collect();
            let d = Dihedral::ALL[k];
            let (t, th, tw) = d.apply(&img, h, w, c);
            prop_assert_eq!((th, tw), d.dims(h, w));
            let (back, bh, bw) = d.invert().apply(&t, th, tw, c);
            prop_assert_eq!((bh, bw), (h, w));
            // Bit patterns, so NaN payloads count too.
            prop_assert!(back.iter().zip(&img).all(|(a, b)| a.to_bits() == b.to_bits()));
            for y in 0..h {
                for xx in 0..w {
                    let (ty, tx) = d.target(y, xx, h, w);
                    prop_assert_eq!(d.source(ty, tx, h, w), (y, xx));
                }
            }
        }
    }

    /// Networks that commute with every flip and transpose by construction: per-pixel 1x1
    /// convolutions, or 3x3 kernels symmetric under the dihedral group, followed by a pixel
    /// shuffle whose sub-pixels all receive the same weights (so each input pixel becomes a
    /// constant block). Self-ensemble must then give the plain output back, up to the rounding
    /// of the f32 sum of 8 equal values (3v, 5v, 7v are not always exact).
    mod equivariant {
        use super::super::*;
        use crate::cpu::CpuLevel;
        use crate::graph::Graph;
        use crate::io::image::{ImageView, Samples, SamplesRef};
        use crate::kernels::conv::{Conv2d, ConvSpec};
        use crate::kernels::gemm::Activation;
        use crate::models::Network;
        use crate::pipeline::{UpscaleOptions, Upscaler};

        fn rand(n: usize, seed: u64) -> Vec<f32> {
            let mut x = seed | 1;
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect()
        }

        /// OIHW weights whose k x k kernels are symmetric under flips and transposes; output
        /// channel o uses the filter of group o / rep, so `rep` consecutive channels are equal.
        fn symmetric(cin: usize, cout: usize, k: usize, rep: usize, seed: u64) -> Vec<f32> {
            let r = rand(cout * cin * 3, seed);
            let mut w = vec![0.0; cout * cin * k * k];
            for o in 0..cout {
                for i in 0..cin {
                    let base = ((o / rep) * cin + i) * 3;
                    for ky in 0..k {
                        for kx in 0..k {
                            let (dy, dx) = (
                                (ky as isize - (k / 2) as isize).abs(),
                                (kx as isize - (k / 2) as isize).abs(),
                            );
                            // Orbit of (dy, dx) under the dihedral group: centre, edge, corner.
                            let orbit = (dy + dx).min(2) as usize;
                            w[((o * cin + i) * k + ky) * k + kx] = r[base + orbit] * 0.5;
                        }
                    }
                }
            }
            w
        }

        fn net(level: CpuLevel, deep: bool) -> Network {
            let s = 2;
            let mut g = Graph::new(3);
            let x = g.input();
            let h = if deep {
                let c1 = Conv2d::new(
                    level,
                    ConvSpec::same(3, 8, 3),
                    &symmetric(3, 8, 3, 1, 1),
                    Some(&rand(8, 2)),
                    Activation::Relu,
                    None,
                );
                let h = g.conv(x, c1);
                let c2 = Conv2d::new(
                    level,
                    ConvSpec::same(8, 3 * s * s, 3),
                    &symmetric(8, 12, 3, s * s, 3),
                    Some(&rand(3, 4).repeat(1).iter().flat_map(|&v| [v; 4]).collect::<Vec<_>>()),
                    Activation::None,
                    None,
                );
                g.conv(h, c2)
            } else {
                let c = Conv2d::new(
                    level,
                    ConvSpec::same(3, 3 * s * s, 1),
                    &symmetric(3, 12, 1, s * s, 5),
                    Some(&[0.1; 12]),
                    Activation::None,
                    None,
                );
                g.conv(x, c)
            };
            g.shuffle_add_nearest(h, x, s);
            Network::new(
                g,
                s,
                level,
                vec![(1.0, 0.0); 3],
                vec![(1.0, 0.0); 3],
                crate::models::EdgeMode::Replicate,
            )
            .expect("a valid test network")
        }

        #[test]
        fn self_ensemble_of_an_equivariant_network_is_the_plain_output() {
            let (h, w) = (9, 13);
            let x: Vec<f32> = rand(h * w * 3, 7).iter().map(|v| v + 0.5).collect();
            for level in CpuLevel::supported() {
                for deep in [false, true] {
                    let n = net(level, deep);
                    let mut arena = crate::graph::Arena::new();
                    let plain = n.run_hwc(&x, h, w, &mut arena).unwrap();
                    for ens in [Ensemble::x8(), Ensemble::flips()] {
                        let e = run_hwc(&n, &mut arena, &x, h, w, &ens).unwrap();
                        let d = plain.iter().zip(&e).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                        assert!(d <= 1e-6, "{level} deep={deep} {} transforms: max diff {d}", ens.len());
                    }
                    // Through the tiled 16-bit pipeline as well.
                    let px: Vec<u16> =
                        rand(h * w * 3, 9).iter().map(|v| ((v + 0.5) * 65535.0) as u16).collect();
                    let img = ImageView {
                        width: w as u32,
                        height: h as u32,
                        channels: 3,
                        samples: SamplesRef::U16(&px),
                    };
                    let run = |tta: Ensemble, tile: usize| -> Samples {
                        let opts = UpscaleOptions { tta, tile, ..UpscaleOptions::default() };
                        Upscaler::new(net(level, deep), opts).upscale(&img).unwrap().samples
                    };
                    let (Samples::U16(a), Samples::U16(b)) =
                        (run(Ensemble::none(), 0), run(Ensemble::x8(), 5))
                    else {
                        unreachable!()
                    };
                    let worst = a.iter().zip(&b).map(|(p, q)| p.abs_diff(*q)).max().unwrap();
                    assert!(worst <= 1, "{level} deep={deep}: 16-bit outputs differ by {worst}");
                }
            }
        }
    }

    #[test]
    fn ensemble_sizes() {
        assert!(Ensemble::default().is_plain());
        assert_eq!(Ensemble::with_count(8).unwrap().len(), 8);
        assert_eq!(Ensemble::with_count(4).unwrap().transforms(), &Dihedral::FLIPS);
        assert!(Ensemble::with_count(2).is_err());
        assert!(Ensemble::custom(vec![Dihedral::ROT90, Dihedral::ROT90]).is_err());
        assert!(Ensemble::custom(vec![]).is_err());
    }
}
