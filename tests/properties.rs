//! Property tests of pure data movement through the public API: splitting an image into tiles and
//! putting the owned parts back, Y4M write/read, and YUV <-> RGB conversion. (Flips and transposes
//! are property-tested in `pipeline::tta`, pixel (un)shuffle in `kernels::shuffle`, tile cover in
//! `pipeline::tile`, shard ranges in `pipeline::shard`.)

use proptest::prelude::*;
use std::path::Path;
use superres::io::color::{rgb_to_yuv, yuv_to_rgb, Matrix, Range, Siting, Subsampling, YuvFormat, YuvFrame};
use superres::io::y4m::{Y4mHeader, Y4mReader, Y4mWriter};
use superres::pipeline::tile::tiles_aligned;

fn pixels(n: usize, seed: u64) -> Vec<u16> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u16
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Run every tile's padded rectangle through an identity "network" (reading past the image
    /// edge by replication, as aligned tiles may) and keep its owned part: the image comes back
    /// exactly, whatever the tile size, context and alignment.
    #[test]
    fn untiling_owned_parts_restores_the_image(
        h in 1usize..70, w in 1usize..70, c in 1usize..4, tile in 0usize..40, pad in 0usize..12,
        align in 1usize..5, seed in any::<u64>(),
    ) {
        let img = pixels(h * w * c, seed);
        let mut out = vec![u16::MAX; h * w * c];
        let mut written = vec![0u8; h * w];
        for t in tiles_aligned(h, w, tile, pad, align) {
            prop_assert!(t.py0 <= t.y0 && t.y1 <= t.py1 && t.px0 <= t.x0 && t.x1 <= t.px1);
            prop_assert_eq!(t.py0 % align, 0);
            prop_assert_eq!(t.px0 % align, 0);
            let (ph, pw) = (t.padded_h(), t.padded_w());
            let mut run = vec![0u16; ph * pw * c];
            for y in 0..ph {
                for x in 0..pw {
                    let (sy, sx) = ((t.py0 + y).min(h - 1), (t.px0 + x).min(w - 1));
                    run[(y * pw + x) * c..][..c].copy_from_slice(&img[(sy * w + sx) * c..][..c]);
                }
            }
            for y in t.y0..t.y1 {
                for x in t.x0..t.x1 {
                    let src = ((y - t.py0) * pw + (x - t.px0)) * c;
                    out[(y * w + x) * c..][..c].copy_from_slice(&run[src..][..c]);
                    written[y * w + x] += 1;
                }
            }
        }
        prop_assert!(written.iter().all(|&n| n == 1), "every pixel owned by exactly one tile");
        prop_assert_eq!(out, img);
    }

    /// Any stream we write reads back with the same header and the same samples.
    #[test]
    fn y4m_round_trip(
        w in 1usize..20, h in 1usize..20, n in 0usize..4, layout in 0usize..9,
        fps in (1usize..120_000, 1usize..1002), aspect in (0usize..40, 0usize..40),
        interlace in prop::sample::select(vec!['p', 't', 'b', 'm']),
        ext in prop::collection::vec("[A-Z]{1,6}=[a-zA-Z0-9]{1,6}", 0..3),
        seed in any::<u64>(),
    ) {
        // Every (subsampling, siting, bits) the format can name.
        let (subsampling, siting, bits) = [
            (Subsampling::S420, Siting::Center, 8),
            (Subsampling::S420, Siting::Left, 8),
            (Subsampling::S420, Siting::TopLeft, 8),
            (Subsampling::S420, Siting::Center, 10),
            (Subsampling::S420, Siting::Center, 12),
            (Subsampling::S422, Siting::Left, 10),
            (Subsampling::S444, Siting::Center, 8),
            (Subsampling::S444, Siting::Center, 12),
            (Subsampling::Mono, Siting::Center, 12),
        ][layout];
        let header = Y4mHeader {
            width: w, height: h, fps, aspect, interlace: Some(interlace), colorspace_tag: None,
            subsampling, siting, bits, extensions: ext,
        };
        let (cw, ch) = subsampling.chroma_size(w, h);
        let max = (1u32 << bits) as u16 - 1;
        let plane = |len: usize, s: u64| -> Vec<u16> { pixels(len, s).iter().map(|v| v & max).collect() };
        let frames: Vec<YuvFrame> = (0..n as u64)
            .map(|i| YuvFrame {
                width: w,
                height: h,
                y: plane(w * h, seed ^ (3 * i + 1)),
                u: plane(cw * ch, seed ^ (3 * i + 2)),
                v: plane(cw * ch, seed ^ (3 * i + 3)),
            })
            .collect();
        let mut wr = Y4mWriter::new(Vec::new(), header.clone()).unwrap();
        for f in &frames {
            wr.write_frame(f).unwrap();
        }
        let bytes = wr.into_inner();
        let mut r = Y4mReader::new(&bytes[..], Path::new("p.y4m"), 1 << 20).unwrap();
        let mut got = r.header().clone();
        got.colorspace_tag = None;
        prop_assert_eq!(got, header);
        for f in &frames {
            let got = r.read_frame().unwrap();
            prop_assert_eq!(got.as_ref(), Some(f));
        }
        prop_assert_eq!(r.read_frame().unwrap(), None);
    }

    /// YUV made from any in-gamut colour survives YUV -> RGB -> YUV within one code value, for
    /// every depth, range and matrix.
    #[test]
    fn yuv_rgb_yuv_within_one_code(
        rgb in prop::collection::vec(0.0f32..=1.0, 3..=3 * 64), bits in prop::sample::select(vec![8u32, 10, 12]),
        full in any::<bool>(), bt709 in any::<bool>(),
    ) {
        let n = rgb.len() / 3;
        let rgb = &rgb[..n * 3];
        let fmt = YuvFormat {
            matrix: if bt709 { Matrix::Bt709 } else { Matrix::Bt601 },
            range: if full { Range::Full } else { Range::Limited },
            bits,
            subsampling: Subsampling::S444,
            siting: Siting::Center,
        };
        let yuv = rgb_to_yuv(rgb, n, 1, &fmt);
        let back = rgb_to_yuv(&yuv_to_rgb(&yuv, &fmt), n, 1, &fmt);
        for (a, b) in [(&yuv.y, &back.y), (&yuv.u, &back.u), (&yuv.v, &back.v)] {
            for (x, y) in a.iter().zip(b) {
                prop_assert!((*x as i32 - *y as i32).abs() <= 1, "{:?}: {} -> {}", fmt, x, y);
            }
        }
        // At 10 bits and more, the RGB it decodes to is within one 8-bit step of the colour it
        // came from (8-bit YUV has fewer levels than 8-bit RGB, so it cannot promise that).
        for (a, b) in rgb.iter().zip(yuv_to_rgb(&yuv, &fmt)).filter(|_| bits >= 10) {
            prop_assert!((a - b).abs() * 255.0 <= 1.0, "{:?}: {} -> {}", fmt, a, b);
        }
    }
}
