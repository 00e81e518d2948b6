//! Tests for image decoding and encoding. Every test image is generated here, either with our
//! encoder or byte by byte (PNG chunks, JPEG EXIF segments) where the test needs something our
//! encoder does not write.

use super::*;
use image::codecs::png::PngEncoder;
use std::fs;

const ALL_FORMATS: [OutFormat; 5] =
    [OutFormat::Png, OutFormat::Jpeg, OutFormat::Webp, OutFormat::Bmp, OutFormat::Tiff];

fn decode(bytes: &[u8]) -> Result<DecodedImage> {
    decode_bytes(bytes, Path::new("test-image"), &DecodeLimits::default())
}

fn encode(img: &ImageView, opts: &EncodeOptions) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_to_writer(&mut out, img, opts)?;
    Ok(out)
}

fn view(width: u32, height: u32, channels: u8, samples: &Samples) -> ImageView<'_> {
    ImageView { width, height, channels, samples: samples.as_ref() }
}

/// Busy, non-repeating values that exercise every bit (lossless formats).
fn busy(width: u32, height: u32, channels: u8, depth: u8) -> Samples {
    let n = (width * height * u32::from(channels)) as usize;
    let at = |i: usize| {
        let (p, c) = (i / channels as usize, i % channels as usize);
        let (x, y) = (p % width as usize, p / width as usize);
        x * 4099 + y * 7919 + c * 28657 + x * y * 131
    };
    match depth {
        8 => Samples::U8((0..n).map(|i| (at(i) % 256) as u8).collect()),
        _ => Samples::U16((0..n).map(|i| (at(i) % 65536) as u16).collect()),
    }
}

/// Smooth gradients that JPEG reproduces closely.
fn smooth(width: u32, height: u32, channels: u8) -> Samples {
    let mut v = Vec::new();
    for y in 0..height {
        for x in 0..width {
            for c in 0..u32::from(channels) {
                v.push((40 + x * 3 + y * 2 + c * 20) as u8);
            }
        }
    }
    Samples::U8(v)
}

fn assert_usage(result: Result<impl fmt::Debug>, needles: &[&str]) {
    match result {
        Err(Error::Usage(msg)) => {
            for needle in needles {
                assert!(msg.contains(needle), "'{msg}' should mention '{needle}'");
            }
        }
        other => panic!("expected a Usage error, got {other:?}"),
    }
}

/// The channel count a decoder gives back for an image written with `channels`.
fn decoded_channels(format: OutFormat, channels: u8) -> u8 {
    match (format, channels) {
        (OutFormat::Webp | OutFormat::Bmp, 1) => 3,
        (OutFormat::Webp | OutFormat::Bmp | OutFormat::Tiff, 2) => 4,
        _ => channels,
    }
}

/// Gray expanded to RGB the way a decoder does it: g → g g g, (g, a) → g g g a.
fn expand_gray<T: Copy>(samples: &[T], from: u8, to: u8) -> Vec<T> {
    if from == to {
        return samples.to_vec();
    }
    samples
        .chunks_exact(from as usize)
        .flat_map(|p| {
            let mut out = vec![p[0]; 3];
            if to == 4 {
                out.push(p[1]);
            }
            out
        })
        .collect()
}

#[test]
fn round_trip_every_format_layout_and_depth() {
    let (w, h) = (7, 5); // odd sizes exercise row padding (BMP) and partial blocks (JPEG)
    for format in ALL_FORMATS {
        for channels in 1..=4u8 {
            for depth in [8u8, 16] {
                let samples = if format == OutFormat::Jpeg {
                    smooth(w, h, channels)
                } else {
                    busy(w, h, channels, depth)
                };
                let samples =
                    if depth == 16 && format == OutFormat::Jpeg { busy(w, h, channels, 16) } else { samples };
                let img = view(w, h, channels, &samples);
                let opts = EncodeOptions::new(format);
                let case = format!("{format} channels={channels} depth={depth}");
                let alpha = channels == 2 || channels == 4;
                if depth == 16 && !format.supports_16bit() {
                    assert_usage(encode(&img, &opts), &["16-bit", "PNG or TIFF"]);
                    continue;
                }
                if alpha && format == OutFormat::Jpeg {
                    assert_usage(encode(&img, &opts), &["alpha"]);
                    continue;
                }
                let bytes = encode(&img, &opts).unwrap_or_else(|e| panic!("{case}: {e}"));
                let back = decode(&bytes).unwrap_or_else(|e| panic!("{case}: {e}"));
                let want_channels = decoded_channels(format, channels);
                assert_eq!((back.width, back.height), (w, h), "{case}");
                assert_eq!(back.channels, want_channels, "{case}");
                assert_eq!(back.bit_depth(), depth, "{case}");
                assert_eq!(back.has_alpha(), alpha, "{case}");
                match (&samples, &back.samples) {
                    (Samples::U8(a), Samples::U8(b)) if format == OutFormat::Jpeg => {
                        assert_eq!(a.len(), b.len(), "{case}");
                        let diffs: Vec<u32> =
                            a.iter().zip(b).map(|(&x, &y)| u32::from(x.abs_diff(y))).collect();
                        let max = diffs.iter().max().copied().unwrap_or(0);
                        let mean = diffs.iter().sum::<u32>() as f64 / diffs.len() as f64;
                        assert!(max <= 12 && mean <= 3.0, "{case}: max diff {max}, mean {mean}");
                    }
                    (Samples::U8(a), Samples::U8(b)) => {
                        assert_eq!(&expand_gray(a, channels, want_channels), b, "{case}")
                    }
                    (Samples::U16(a), Samples::U16(b)) => {
                        assert_eq!(&expand_gray(a, channels, want_channels), b, "{case}")
                    }
                    _ => panic!("{case}: sample type changed"),
                }
            }
        }
    }
}

#[test]
fn one_pixel_images_round_trip() {
    for format in ALL_FORMATS {
        let samples = Samples::U8(vec![200, 100, 50]);
        let bytes = encode(&view(1, 1, 3, &samples), &EncodeOptions::new(format)).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!((back.width, back.height, back.channels), (1, 1, 3), "{format}");
        let Samples::U8(px) = &back.samples else { panic!("{format}: not 8-bit") };
        for (a, b) in px.iter().zip([200u8, 100, 50]) {
            assert!(a.abs_diff(b) <= 4, "{format}: {px:?}");
        }
    }
    let samples = Samples::U16(vec![65535, 1]);
    let bytes = encode(&view(1, 1, 2, &samples), &EncodeOptions::new(OutFormat::Png)).unwrap();
    assert_eq!(decode(&bytes).unwrap().samples, samples);
}

#[test]
fn jpeg_quality_affects_size_and_defaults_to_95() {
    let samples = busy(32, 32, 3, 8);
    let img = view(32, 32, 3, &samples);
    let size = |q: Option<u8>| {
        encode(&img, &EncodeOptions { quality: q, ..EncodeOptions::new(OutFormat::Jpeg) }).unwrap().len()
    };
    assert!(size(Some(10)) < size(Some(90)));
    assert_eq!(size(None), size(Some(DEFAULT_JPEG_QUALITY)));
}

#[test]
fn usage_errors_for_options() {
    let rgb = busy(4, 4, 3, 8);
    let img = view(4, 4, 3, &rgb);
    for format in [OutFormat::Png, OutFormat::Webp, OutFormat::Bmp, OutFormat::Tiff] {
        let opts = EncodeOptions { quality: Some(80), ..EncodeOptions::new(format) };
        assert_usage(encode(&img, &opts), &["quality", "lossless"]);
    }
    for q in [0, 101, 255] {
        let opts = EncodeOptions { quality: Some(q), ..EncodeOptions::new(OutFormat::Jpeg) };
        assert_usage(encode(&img, &opts), &["between 1 and 100"]);
    }
    // A buffer that does not match the stated shape is refused, not a panic in the encoder.
    let short = Samples::U8(vec![0; 47]);
    assert_usage(encode(&view(4, 4, 3, &short), &EncodeOptions::new(OutFormat::Png)), &["47 samples"]);
    let empty = Samples::U8(vec![]);
    assert_usage(encode(&view(0, 4, 3, &empty), &EncodeOptions::new(OutFormat::Png)), &["empty"]);
    assert_usage(
        encode(&view(1, 1, 5, &Samples::U8(vec![0; 5])), &EncodeOptions::new(OutFormat::Png)),
        &["5 channels"],
    );
    // Shape checks that need no pixels, for callers validating before an expensive run.
    assert_usage(EncodeOptions::new(OutFormat::Webp).check(20_000, 10, 3, 8), &["WebP", "16384"]);
    assert_usage(EncodeOptions::new(OutFormat::Jpeg).check(70_000, 10, 3, 8), &["JPEG"]);
    assert_usage(EncodeOptions::new(OutFormat::Bmp).check(10, 10, 4, 16), &["BMP", "16-bit"]);
    assert_usage(EncodeOptions::new(OutFormat::Jpeg).check(10, 10, 2, 8), &["alpha"]);
    let huge_icc =
        EncodeOptions { icc: Some(vec![0; JPEG_MAX_ICC + 1]), ..EncodeOptions::new(OutFormat::Jpeg) };
    assert_usage(huge_icc.check(10, 10, 3, 8), &["ICC"]);
    EncodeOptions::new(OutFormat::Tiff).check(10, 10, 2, 16).unwrap();
}

#[test]
fn out_format_names() {
    for (s, f) in [
        ("png", OutFormat::Png),
        ("jpg", OutFormat::Jpeg),
        ("JPEG", OutFormat::Jpeg),
        ("webp", OutFormat::Webp),
        ("bmp", OutFormat::Bmp),
        ("tif", OutFormat::Tiff),
        ("Tiff", OutFormat::Tiff),
    ] {
        assert_eq!(s.parse::<OutFormat>().unwrap(), f);
    }
    assert_usage("gif".parse::<OutFormat>(), &["gif", "png"]);
    assert_eq!(OutFormat::from_extension(Path::new("a/b.JPG")), Some(OutFormat::Jpeg));
    assert_eq!(OutFormat::from_extension(Path::new("a/b.tiff")), Some(OutFormat::Tiff));
    assert_eq!(OutFormat::from_extension(Path::new("a/b.gif")), None);
    assert_eq!(OutFormat::from_extension(Path::new("a/b")), None);
}

/// Something shaped like an ICC profile (size field, 'acsp' signature) in case a codec looks.
fn fake_icc(len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    p[..4].copy_from_slice(&(len as u32).to_be_bytes());
    p[36..40].copy_from_slice(b"acsp");
    p
}

#[test]
fn icc_profile_round_trips_where_the_format_carries_one() {
    let samples = smooth(9, 9, 3);
    let img = view(9, 9, 3, &samples);
    for (format, icc_len) in [
        (OutFormat::Png, 3000),
        (OutFormat::Jpeg, 3000),
        // Larger than one APP2 segment: the profile is split and reassembled.
        (OutFormat::Jpeg, 150_000),
        (OutFormat::Webp, 3001),
        (OutFormat::Tiff, 3000),
    ] {
        let icc = fake_icc(icc_len);
        let opts = EncodeOptions { icc: Some(icc.clone()), ..EncodeOptions::new(format) };
        let back = decode(&encode(&img, &opts).unwrap()).unwrap();
        assert_eq!(back.icc.as_deref(), Some(&icc[..]), "{format} {icc_len}");
    }
    // BMP cannot carry one: dropped, and the image is still written.
    let opts = EncodeOptions { icc: Some(fake_icc(500)), ..EncodeOptions::new(OutFormat::Bmp) };
    assert_eq!(decode(&encode(&img, &opts).unwrap()).unwrap().icc, None);
    // No profile in, none out.
    assert_eq!(decode(&encode(&img, &EncodeOptions::new(OutFormat::Png)).unwrap()).unwrap().icc, None);
}

/// The upright pixel at (x, y) for a stored image `w` wide and `h` high with EXIF orientation
/// `o`, as source coordinates (written out from the EXIF specification, independently of the
/// `image` crate).
fn upright_source(o: u16, w: u32, h: u32, x: u32, y: u32) -> (u32, u32) {
    match o {
        1 => (x, y),
        2 => (w - 1 - x, y),
        3 => (w - 1 - x, h - 1 - y),
        4 => (x, h - 1 - y),
        5 => (y, x),
        6 => (y, h - 1 - x),
        7 => (w - 1 - y, h - 1 - x),
        8 => (w - 1 - y, x),
        _ => unreachable!(),
    }
}

/// A TIFF-structured EXIF block holding only an orientation tag.
fn exif_tiff(orientation: u16, big_endian: bool) -> Vec<u8> {
    let u16b = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let u32b = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut t = Vec::new();
    t.extend_from_slice(if big_endian { b"MM" } else { b"II" });
    t.extend_from_slice(&u16b(42));
    t.extend_from_slice(&u32b(8)); // first IFD right after the header
    t.extend_from_slice(&u16b(1)); // one entry
    t.extend_from_slice(&u16b(0x0112)); // Orientation
    t.extend_from_slice(&u16b(3)); // SHORT
    t.extend_from_slice(&u32b(1)); // one value
    t.extend_from_slice(&u16b(orientation));
    t.extend_from_slice(&[0, 0]); // value field padding
    t.extend_from_slice(&u32b(0)); // no next IFD
    t
}

/// `jpeg` with an APP1 EXIF segment inserted right after SOI.
fn with_exif_app1(jpeg: &[u8], exif: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((2 + 6 + exif.len()) as u16).to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn jpeg_exif_orientation_all_eight() {
    // 32x16 gray, eight flat 8x8 blocks aligned with the JPEG block grid, so they decode almost
    // exactly and every orientation gives a different picture.
    let (w, h) = (32u32, 16u32);
    let level = |x: u32, y: u32| (16 + 32 * ((y / 8) * 4 + x / 8)) as u8;
    let stored = Samples::U8((0..h).flat_map(|y| (0..w).map(move |x| level(x, y))).collect());
    let opts = EncodeOptions { quality: Some(100), ..EncodeOptions::new(OutFormat::Jpeg) };
    let jpeg = encode(&view(w, h, 1, &stored), &opts).unwrap();
    for big_endian in [true, false] {
        for o in 1..=8u16 {
            let back = decode(&with_exif_app1(&jpeg, &exif_tiff(o, big_endian))).unwrap();
            let (uw, uh) = if o >= 5 { (h, w) } else { (w, h) };
            assert_eq!((back.width, back.height, back.channels), (uw, uh, 1), "orientation {o}");
            let Samples::U8(px) = &back.samples else { panic!("not 8-bit") };
            for y in 0..uh {
                for x in 0..uw {
                    let (sx, sy) = upright_source(o, w, h, x, y);
                    let got = px[(y * uw + x) as usize];
                    assert!(
                        got.abs_diff(level(sx, sy)) <= 3,
                        "orientation {o} at ({x},{y}): {got} vs {}",
                        level(sx, sy)
                    );
                }
            }
        }
    }
}

#[test]
fn png_and_webp_exif_orientation() {
    let (w, h) = (5u32, 3u32);
    let stored = busy(w, h, 3, 8);
    let Samples::U8(src) = &stored else { unreachable!() };
    for format in [OutFormat::Png, OutFormat::Webp] {
        for o in [3u16, 6, 7] {
            let mut bytes = Vec::new();
            let s = src.as_slice();
            let exif = exif_tiff(o, true);
            match format {
                OutFormat::Png => {
                    let mut e = PngEncoder::new(&mut bytes);
                    e.set_exif_metadata(exif).unwrap();
                    e.write_image(s, w, h, ExtendedColorType::Rgb8).unwrap();
                }
                _ => {
                    let mut e = WebPEncoder::new_lossless(&mut bytes);
                    e.set_exif_metadata(exif).unwrap();
                    e.write_image(s, w, h, ExtendedColorType::Rgb8).unwrap();
                }
            }
            let back = decode(&bytes).unwrap();
            let (uw, uh) = if o >= 5 { (h, w) } else { (w, h) };
            assert_eq!((back.width, back.height), (uw, uh), "{format} orientation {o}");
            let Samples::U8(px) = &back.samples else { panic!("not 8-bit") };
            for y in 0..uh {
                for x in 0..uw {
                    let (sx, sy) = upright_source(o, w, h, x, y);
                    let got = &px[((y * uw + x) * 3) as usize..][..3];
                    let want = &src[((sy * w + sx) * 3) as usize..][..3];
                    assert_eq!(got, want, "{format} orientation {o} at ({x},{y})");
                }
            }
        }
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// zlib stream holding `raw` in one stored (uncompressed) deflate block.
fn zlib_stored(raw: &[u8]) -> Vec<u8> {
    let mut z = vec![0x78, 0x01, 0x01];
    let len = raw.len() as u16;
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&(!len).to_le_bytes());
    z.extend_from_slice(raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in raw {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    z
}

/// A PNG built chunk by chunk: `ihdr` fields, extra chunks before IDAT, then `rows` (each with
/// its filter byte).
fn handmade_png(
    width: u32,
    height: u32,
    bit_depth: u8,
    color_type: u8,
    extra: &[(&[u8; 4], Vec<u8>)],
    rows: &[u8],
) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    for (kind, data) in extra {
        png_chunk(&mut png, kind, data);
    }
    png_chunk(&mut png, b"IDAT", &zlib_stored(rows));
    png_chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn palette_png_with_transparency_becomes_rgba() {
    let plte = vec![255, 0, 0, 0, 255, 0, 0, 0, 255];
    let rows = [0, 0, 1, 0, 2, 0];
    let with_trns = handmade_png(2, 2, 8, 3, &[(b"PLTE", plte.clone()), (b"tRNS", vec![0, 128])], &rows);
    let img = decode(&with_trns).unwrap();
    assert_eq!((img.channels, img.bit_depth(), img.format), (4, 8, ImageFormat::Png));
    assert!(img.has_alpha());
    assert_eq!(img.samples, Samples::U8(vec![255, 0, 0, 0, 0, 255, 0, 128, 0, 0, 255, 255, 255, 0, 0, 0]));

    let opaque = handmade_png(2, 2, 8, 3, &[(b"PLTE", plte)], &rows);
    let img = decode(&opaque).unwrap();
    assert_eq!(img.channels, 3);
    assert_eq!(img.samples, Samples::U8(vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 0, 0]));
}

#[test]
fn low_bit_depth_gray_png_expands_to_8_bit() {
    // 1-bit gray, 3 pixels: 1 0 1 (padded to a byte).
    let img = decode(&handmade_png(3, 1, 1, 0, &[], &[0, 0b1010_0000])).unwrap();
    assert_eq!(img.channels, 1);
    assert_eq!(img.samples, Samples::U8(vec![255, 0, 255]));
}

#[test]
fn float_tiff_becomes_16_bit_clamped() {
    let floats: [f32; 6] = [-0.5, 0.0, 0.5, 1.0, 2.0, f32::NAN];
    let mut bytes = Cursor::new(Vec::new());
    TiffEncoder::new(&mut bytes)
        .write_image(bytemuck::cast_slice(&floats), 2, 1, ExtendedColorType::Rgb32F)
        .unwrap();
    let img = decode(bytes.get_ref()).unwrap();
    assert_eq!((img.width, img.height, img.channels, img.bit_depth()), (2, 1, 3, 16));
    assert_eq!(img.samples, Samples::U16(vec![0, 0, 32768, 65535, 65535, 0]));
}

#[test]
fn format_detected_from_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("really-a-png.jpg");
    let samples = busy(3, 2, 3, 8);
    fs::write(&path, encode(&view(3, 2, 3, &samples), &EncodeOptions::new(OutFormat::Png)).unwrap()).unwrap();
    let img = decode_file(&path, &DecodeLimits::default()).unwrap();
    assert_eq!(img.format, ImageFormat::Png);
    assert_eq!(img.samples, samples);
}

#[test]
fn pixel_limit_checked_from_header() {
    // The header claims 20000x20000 (400 M pixels) but no pixel data follows: only a check made
    // from the header, before decoding, can report the limit rather than the truncation.
    let mut forged = handmade_png(20_000, 20_000, 8, 2, &[], &[0; 16]);
    forged.truncate(forged.len() - 20);
    match decode(&forged) {
        Err(Error::Limit { what, value, limit, flag }) => {
            assert_eq!(what, "decoded image pixels");
            assert_eq!((value, limit), (400_000_000, DEFAULT_MAX_PIXELS));
            assert_eq!(flag, "--max-pixels");
        }
        other => panic!("expected a Limit error, got {other:?}"),
    }

    // Same for a JPEG whose frame header is patched to 60000x60000, then cut short.
    let samples = smooth(16, 16, 3);
    let mut jpeg = encode(&view(16, 16, 3, &samples), &EncodeOptions::new(OutFormat::Jpeg)).unwrap();
    let sof = jpeg.windows(2).position(|m| m == [0xFF, 0xC0]).expect("baseline SOF0");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let cut = jpeg.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap() + 20;
    jpeg.truncate(cut);
    assert!(matches!(decode(&jpeg), Err(Error::Limit { value: 3_600_000_000, .. })), "{:?}", decode(&jpeg));

    // The limit is inclusive.
    let png = encode(&view(10, 10, 3, &busy(10, 10, 3, 8)), &EncodeOptions::new(OutFormat::Png)).unwrap();
    let at = |max_pixels| decode_bytes(&png, Path::new("x"), &DecodeLimits { max_pixels });
    assert!(at(100).is_ok());
    assert!(matches!(at(99), Err(Error::Limit { value: 100, limit: 99, .. })));
}

#[test]
fn missing_or_unreadable_input_is_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.png");
    match decode_file(&missing, &DecodeLimits::default()) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
    // A directory opens on Unix but cannot be read.
    assert!(matches!(decode_file(dir.path(), &DecodeLimits::default()), Err(Error::Io { .. })));
}

fn assert_input_error(result: Result<DecodedImage>, needle: &str) {
    match result {
        Err(Error::Input { path, reason }) => {
            assert_eq!(path, Path::new("test-image"));
            assert!(reason.contains(needle), "'{reason}' should mention '{needle}'");
        }
        other => panic!("expected an Input error, got {other:?}"),
    }
}

#[test]
fn unrecognised_and_unsupported_data_is_input_error() {
    assert_input_error(decode(b""), "empty");
    assert_input_error(decode(b"hello, this is not an image at all"), "not a recognised image format");
    assert_input_error(decode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"), "not supported");
    // Named after the file on disk too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.png");
    fs::write(&path, b"junk junk junk junk").unwrap();
    match decode_file(&path, &DecodeLimits::default()) {
        Err(e @ Error::Input { .. }) => assert!(e.to_string().contains("junk.png"), "{e}"),
        other => panic!("expected an Input error, got {other:?}"),
    }
}

#[test]
fn corrupt_png_is_input_error() {
    let samples = busy(6, 6, 3, 8);
    let png = encode(&view(6, 6, 3, &samples), &EncodeOptions::new(OutFormat::Png)).unwrap();
    let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
    let mut bad = png.clone();
    for b in &mut bad[idat + 4..idat + 12] {
        *b ^= 0x5A;
    }
    assert_input_error(decode(&bad), "PNG");
}

#[test]
fn every_truncation_is_an_input_error() {
    let samples = busy(9, 7, 4, 8);
    let rgb = busy(9, 7, 3, 8);
    for format in ALL_FORMATS {
        let img = if format == OutFormat::Jpeg { view(9, 7, 3, &rgb) } else { view(9, 7, 4, &samples) };
        let opts = EncodeOptions { icc: Some(fake_icc(300)), ..EncodeOptions::new(format) };
        let bytes = encode(&img, &opts).unwrap();
        // Trailers that carry no image data may go missing without harm (other tools accept
        // that too): PNG's final 12-byte IEND chunk, and the RIFF pad byte after an odd-sized
        // last WebP chunk. Anything shorter must fail.
        let complete_from = match format {
            OutFormat::Png => bytes.len() - 12,
            OutFormat::Webp => bytes.len() - 1,
            _ => bytes.len(),
        };
        for len in 0..bytes.len() {
            match decode(&bytes[..len]) {
                Err(Error::Input { .. }) => {}
                Ok(back) if len >= complete_from => assert_eq!(back.samples, samples),
                other => panic!(
                    "{format} truncated to {len} of {} bytes: expected an Input error, got {other:?}",
                    bytes.len()
                ),
            }
        }
    }
    // A 16-bit PNG too, cut inside its data.
    let deep = busy(5, 4, 4, 16);
    let png = encode(&view(5, 4, 4, &deep), &EncodeOptions::new(OutFormat::Png)).unwrap();
    for len in 0..png.len() - 12 {
        assert!(matches!(decode(&png[..len]), Err(Error::Input { .. })), "16-bit PNG truncated to {len}");
    }
}

#[test]
fn jpeg_end_detection_ignores_thumbnail_eoi() {
    let samples = smooth(16, 16, 3);
    let jpeg = encode(&view(16, 16, 3, &samples), &EncodeOptions::new(OutFormat::Jpeg)).unwrap();
    // An APP1 segment holding a complete (tiny) JPEG, as an EXIF thumbnail would.
    let mut app1 = vec![0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x00, 0xFF, 0xD9];
    app1.splice(0..0, b"junk".iter().copied());
    let with_thumb = with_exif_app1(&jpeg, &app1);
    assert!(decode(&with_thumb).is_ok());
    let cut = with_thumb.len() - 40;
    assert!(matches!(decode(&with_thumb[..cut]), Err(Error::Input { .. })));
    // Data after the EOI marker (seen in the wild) is accepted.
    let mut trailing = jpeg.clone();
    trailing.extend_from_slice(&[0; 100]);
    assert!(decode(&trailing).is_ok());
}

#[test]
fn mutated_files_never_panic() {
    let samples = busy(9, 7, 3, 8);
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for format in ALL_FORMATS {
        let bytes = encode(&view(9, 7, 3, &samples), &EncodeOptions::new(format)).unwrap();
        for round in 0..1500 {
            let mut m = bytes.clone();
            for _ in 0..1 + round % 4 {
                let r = next();
                let i = r as usize % m.len();
                m[i] = (r >> 32) as u8;
            }
            // Ok or Err, both fine: only a panic fails.
            let result = std::panic::catch_unwind(|| decode(&m).map(|_| ()));
            assert!(result.is_ok(), "{format}: mutation round {round} panicked");
        }
    }
}

#[test]
fn write_image_atomic_writes_file_and_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let samples = busy(6, 4, 4, 16);
    for (name, format) in [("out.png", OutFormat::Png), ("out.tiff", OutFormat::Tiff)] {
        let path = dir.path().join(name);
        write_image_atomic(&path, &view(6, 4, 4, &samples), &EncodeOptions::new(format)).unwrap();
        let back = decode_file(&path, &DecodeLimits::default()).unwrap();
        assert_eq!(back.samples, samples);
    }
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn write_image_atomic_failures_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let samples = busy(6, 4, 4, 16);
    let img = view(6, 4, 4, &samples);
    // Usage error: checked before any file is created.
    assert_usage(
        write_image_atomic(&dir.path().join("out.jpg"), &img, &EncodeOptions::new(OutFormat::Jpeg)),
        &["16-bit"],
    );
    // Missing directory.
    let err =
        write_image_atomic(&dir.path().join("missing/out.png"), &img, &EncodeOptions::new(OutFormat::Png))
            .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    // Too wide for WebP.
    let wide = Samples::U8(vec![0; 16_385 * 3]);
    let err = write_image_atomic(
        &dir.path().join("out.webp"),
        &view(16_385, 1, 3, &wide),
        &EncodeOptions::new(OutFormat::Webp),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err:?}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
