//! Decoding and encoding image files: PNG, JPEG, WebP, BMP and TIFF.
//!
//! Decoding keeps the file's sample depth (8 or 16 bits) and channel layout, applies the EXIF
//! orientation so the pixels come out upright, and captures the ICC profile. Encoding never
//! loses information silently: 16-bit samples or alpha that the chosen format cannot store are a
//! [`Error::Usage`], not a quiet conversion.
//!
//! What each output format carries:
//!
//! | format | 16-bit | alpha | gray           | gray + alpha | ICC profile | compression     |
//! |--------|--------|-------|----------------|--------------|-------------|-----------------|
//! | PNG    | yes    | yes   | gray           | gray + alpha | iCCP chunk  | lossless        |
//! | JPEG   | no     | no    | gray           | (no alpha)   | APP2        | lossy, 1..=100  |
//! | WebP   | no     | yes   | gray           | gray + alpha | ICCP chunk  | lossless only   |
//! | BMP    | no     | yes   | 8-bit palette  | RGBA         | dropped     | uncompressed    |
//! | TIFF   | yes    | yes   | gray           | RGBA         | ICC tag     | uncompressed    |
//!
//! WebP output is lossless because the `image` crate's WebP encoder only has a lossless mode.
//! BMP output drops the ICC profile silently because the encoder writes BITMAPINFOHEADER/V4
//! headers, which have no field for one. The TIFF and BMP encoders cannot write gray + alpha, so
//! such images are expanded to RGBA (exactly, no information lost). Gray WebP and BMP files
//! decode as RGB(A): their decoders always produce color.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Seek, Write};
use std::path::Path;
use std::str::FromStr;

use image::codecs::bmp::{BmpDecoder, BmpEncoder};
use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::codecs::png::PngDecoder;
use image::codecs::tiff::{TiffDecoder, TiffEncoder};
use image::codecs::webp::{WebPDecoder, WebPEncoder};
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError, ImageFormat, ImageReader,
};

use super::atomic::write_atomic;
use crate::error::{Error, Result};

/// Default for [`DecodeLimits::max_pixels`]: 16384 × 16384 = 268,435,456 pixels, which is
/// 2 GiB of decoded RGBA16 samples: large enough for any real photograph, small enough that a
/// forged header cannot make us allocate unbounded memory.
pub const DEFAULT_MAX_PIXELS: u64 = 16384 * 16384;

/// JPEG quality used when [`EncodeOptions::quality`] is `None`: visually lossless for
/// super-resolution output, where compression artefacts would undo the work.
pub const DEFAULT_JPEG_QUALITY: u8 = 95;

/// Extra bytes a decoder may allocate beyond its pixel buffers (metadata, row buffers).
const DECODER_HEADROOM: u64 = 64 << 20;

/// The largest ICC profile a JPEG can carry: 255 APP2 segments of 65,519 bytes each.
const JPEG_MAX_ICC: usize = 255 * 65_519;

/// Resource limits applied while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width × height, checked against the file header before any pixel data
    /// is decoded. Exceeding it is an [`Error::Limit`] naming `--max-pixels`.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_pixels: DEFAULT_MAX_PIXELS }
    }
}

/// Owned interleaved samples, row-major, native endian.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

impl Samples {
    /// Borrows the samples.
    pub fn as_ref(&self) -> SamplesRef<'_> {
        match self {
            Samples::U8(v) => SamplesRef::U8(v),
            Samples::U16(v) => SamplesRef::U16(v),
        }
    }
}

/// Borrowed interleaved samples, row-major, native endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplesRef<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
}

impl SamplesRef<'_> {
    fn len(&self) -> usize {
        match self {
            SamplesRef::U8(s) => s.len(),
            SamplesRef::U16(s) => s.len(),
        }
    }

    fn bit_depth(&self) -> u8 {
        match self {
            SamplesRef::U8(_) => 8,
            SamplesRef::U16(_) => 16,
        }
    }
}

/// A decoded image, upright (EXIF orientation already applied).
#[derive(Clone)]
pub struct DecodedImage {
    pub width: u32,
    pub height: u32,
    /// 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
    pub channels: u8,
    /// `width * height * channels` samples: 8-bit files give `U8`, 16-bit and float files `U16`.
    pub samples: Samples,
    /// The embedded ICC profile, if the file has one.
    pub icc: Option<Vec<u8>>,
    /// The format the file was detected as (from its content, not its name).
    pub format: ImageFormat,
}

impl DecodedImage {
    /// Bits per sample: 8 or 16.
    pub fn bit_depth(&self) -> u8 {
        self.samples.as_ref().bit_depth()
    }

    /// Whether the last channel is alpha.
    pub fn has_alpha(&self) -> bool {
        self.channels == 2 || self.channels == 4
    }

    /// Borrows the pixels, for encoding.
    pub fn view(&self) -> ImageView<'_> {
        ImageView {
            width: self.width,
            height: self.height,
            channels: self.channels,
            samples: self.samples.as_ref(),
        }
    }
}

// Hand-written so that a failing test's `unwrap_err` does not print megabytes of samples.
impl fmt::Debug for DecodedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("channels", &self.channels)
            .field("bit_depth", &self.bit_depth())
            .field("icc_len", &self.icc.as_ref().map(Vec::len))
            .field("format", &self.format)
            .finish()
    }
}

/// Borrowed pixels to encode.
#[derive(Clone, Copy, Debug)]
pub struct ImageView<'a> {
    pub width: u32,
    pub height: u32,
    /// 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
    pub channels: u8,
    /// `width * height * channels` interleaved samples, row-major.
    pub samples: SamplesRef<'a>,
}

impl ImageView<'_> {
    /// Bits per sample: 8 or 16.
    pub fn bit_depth(&self) -> u8 {
        self.samples.bit_depth()
    }

    /// Whether the last channel is alpha.
    pub fn has_alpha(&self) -> bool {
        self.channels == 2 || self.channels == 4
    }

    /// `(width, height, channels)` after checking that the view is well formed: at least one
    /// pixel, 1 to 4 channels, and exactly `width * height * channels` samples.
    pub fn checked_dims(&self) -> Result<(usize, usize, usize)> {
        let (w, h, c) = (self.width as usize, self.height as usize, self.channels as usize);
        let len = self.samples.len();
        if w == 0
            || h == 0
            || !(1..=4).contains(&c)
            || w.checked_mul(h).and_then(|p| p.checked_mul(c)) != Some(len)
        {
            return Err(Error::Usage(format!("{len} samples for a {w}x{h}x{c} image")));
        }
        Ok((w, h, c))
    }
}

/// Decodes an image file; the format is detected from the content, not the extension.
///
/// 8-bit files give 8-bit samples and 16-bit PNG/TIFF give 16-bit samples. Palette images become
/// RGB, or RGBA when they have transparency. 32-bit float TIFFs are converted to 16-bit: values
/// are clamped to 0.0..=1.0 and NaN becomes 0. The EXIF orientation (JPEG, PNG eXIf before the
/// image data, WebP, TIFF) is applied.
///
/// Errors: [`Error::Io`] if the file cannot be opened or read, [`Error::Limit`] if the header
/// announces more than `limits.max_pixels` pixels (checked before decoding the pixels), and
/// [`Error::Input`] for unrecognised, unsupported, corrupt or truncated data.
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<DecodedImage> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    decode_reader(BufReader::new(file), path, limits, true)
}

/// Decodes an image held in memory (standard input, for example), like [`decode_file`]. `name`
/// only appears in error messages.
pub fn decode_bytes(bytes: &[u8], name: &Path, limits: &DecodeLimits) -> Result<DecodedImage> {
    decode_reader(Cursor::new(bytes), name, limits, false)
}

fn decode_reader<R: BufRead + Seek>(
    mut reader: R,
    name: &Path,
    limits: &DecodeLimits,
    from_file: bool,
) -> Result<DecodedImage> {
    let read_failed = |e: io::Error| {
        if from_file {
            Error::io(name, e)
        } else {
            Error::input(name, e.to_string())
        }
    };
    if reader.fill_buf().map_err(read_failed)?.is_empty() {
        return Err(Error::input(name, "empty file, not an image"));
    }
    let guessed = ImageReader::new(reader).with_guessed_format().map_err(read_failed)?;
    let format = match guessed.format() {
        Some(
            f @ (ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::WebP
            | ImageFormat::Bmp
            | ImageFormat::Tiff),
        ) => f,
        Some(other) => {
            return Err(Error::input(name, format!("{other:?} images are not supported ({SUPPORTED})")));
        }
        None => return Err(Error::input(name, format!("not a recognised image format ({SUPPORTED})"))),
    };
    let failed = |e: ImageError| decode_error(name, format, from_file, e);

    // What the decoder may allocate while reading headers; PNG takes it at construction.
    let header_budget = limits.max_pixels.saturating_mul(8).saturating_add(DECODER_HEADROOM);
    let mut reader = guessed.into_inner();
    let mut complete = true;
    let mut decoder = if format == ImageFormat::Jpeg {
        // The JPEG decoder reads the whole stream into memory anyway; reading it here lets us
        // check that it is complete, which the decoder does not (it pads a cut-off scan with gray).
        let mut data = Vec::new();
        reader.read_to_end(&mut data).map_err(read_failed)?;
        complete = jpeg_has_end(&data);
        open_decoder(Cursor::new(data), format, header_budget)
    } else {
        open_decoder(reader, format, header_budget)
    }
    .map_err(failed)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(Error::Limit {
            what: "decoded image pixels".into(),
            value: pixels,
            limit: limits.max_pixels,
            flag: "--max-pixels".into(),
        });
    }
    // Reported after the pixel limit, which a header alone can exceed.
    if !complete {
        return Err(Error::input(name, "truncated JPEG file: no end-of-image marker after the image data"));
    }
    if pixels == 0 {
        return Err(Error::input(
            name,
            format!("{} image has no pixels ({width}x{height})", format_name(format)),
        ));
    }

    // Metadata is read before `set_limits`: once limits are set, the TIFF decoder caps every
    // tag at the image's byte size / 32, which silently drops the ICC profile of small images.
    let icc = decoder.icc_profile().map_err(failed)?.filter(|p| !p.is_empty());
    let orientation = decoder.orientation().map_err(failed)?;

    // Output buffer, one decoded-size intermediate (a TIFF strip can be the whole image), and
    // headroom for row buffers.
    let budget = decoder.total_bytes().saturating_mul(2).saturating_add(DECODER_HEADROOM);
    decoder.set_limits(alloc_limits(budget)).map_err(failed)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(failed)?;
    image.apply_orientation(orientation);

    let (width, height) = (image.width(), image.height());
    let (channels, samples) = into_samples(image, name)?;
    Ok(DecodedImage { width, height, channels, samples, icc, format })
}

/// Constructs the decoder for `format` directly rather than through `ImageReader::into_decoder`,
/// which applies allocation limits before we have read the metadata (see `decode_reader`).
fn open_decoder<'a, R: BufRead + Seek + 'a>(
    reader: R,
    format: ImageFormat,
    header_budget: u64,
) -> image::ImageResult<Box<dyn ImageDecoder + 'a>> {
    Ok(match format {
        ImageFormat::Png => Box::new(PngDecoder::with_limits(reader, alloc_limits(header_budget))?),
        ImageFormat::Jpeg => Box::new(JpegDecoder::new(reader)?),
        ImageFormat::WebP => Box::new(WebPDecoder::new(reader)?),
        ImageFormat::Bmp => Box::new(BmpDecoder::new(reader)?),
        // Only formats accepted by `decode_reader` get here; TIFF is the last one.
        _ => Box::new(TiffDecoder::new(reader)?),
    })
}

/// Whether a JPEG stream has an EOI marker after its first scan. Walks the marker segments to the
/// first SOS so that an EOI inside metadata (an EXIF thumbnail is a complete JPEG) is not taken
/// for the end. Streams too malformed to walk count as complete: the decoder reports those.
fn jpeg_has_end(data: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return true;
        }
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte before a marker
            continue;
        }
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        if marker == 0xDA {
            let scan = (i + 2 + len).min(data.len());
            return data[scan..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        i += 2 + len;
    }
    // Cut off before the first scan: no image data at all.
    false
}

const SUPPORTED: &str = "supported: PNG, JPEG, WebP, BMP, TIFF";

fn alloc_limits(max_alloc: u64) -> image::Limits {
    // `Limits` is non-exhaustive: start from the defaults and set the one field we use.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    limits
}

fn decode_error(name: &Path, format: ImageFormat, from_file: bool, e: ImageError) -> Error {
    let format = format_name(format);
    match e {
        // A failing read of the file itself (EIO, a directory) is an I/O problem; running out of
        // data or invalid bytes inside the stream is a problem with the image.
        ImageError::IoError(e)
            if from_file && !matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData) =>
        {
            Error::io(name, e)
        }
        ImageError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Error::input(name, format!("truncated {format} file: {e}"))
        }
        ImageError::Limits(e) => Error::input(
            name,
            format!("{format} data needs more memory than its dimensions justify ({e}); the file is probably corrupt"),
        ),
        e => Error::input(name, format!("cannot decode {format} data: {e}")),
    }
}

fn into_samples(image: DynamicImage, name: &Path) -> Result<(u8, Samples)> {
    Ok(match image {
        DynamicImage::ImageLuma8(b) => (1, Samples::U8(b.into_raw())),
        DynamicImage::ImageLumaA8(b) => (2, Samples::U8(b.into_raw())),
        DynamicImage::ImageRgb8(b) => (3, Samples::U8(b.into_raw())),
        DynamicImage::ImageRgba8(b) => (4, Samples::U8(b.into_raw())),
        DynamicImage::ImageLuma16(b) => (1, Samples::U16(b.into_raw())),
        DynamicImage::ImageLumaA16(b) => (2, Samples::U16(b.into_raw())),
        DynamicImage::ImageRgb16(b) => (3, Samples::U16(b.into_raw())),
        DynamicImage::ImageRgba16(b) => (4, Samples::U16(b.into_raw())),
        DynamicImage::ImageRgb32F(b) => {
            (3, Samples::U16(b.into_raw().into_iter().map(unit_float_to_u16).collect()))
        }
        DynamicImage::ImageRgba32F(b) => {
            (4, Samples::U16(b.into_raw().into_iter().map(unit_float_to_u16).collect()))
        }
        other => {
            return Err(Error::input(name, format!("unsupported pixel layout {:?}", other.color())));
        }
    })
}

/// Float samples are nominally 0.0..=1.0; anything outside is clamped, and NaN (no meaningful
/// value) becomes black rather than white.
fn unit_float_to_u16(v: f32) -> u16 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 65535.0).round() as u16
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "PNG",
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Tiff => "TIFF",
        _ => "image",
    }
}

/// An output file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutFormat {
    Png,
    Jpeg,
    Webp,
    Bmp,
    Tiff,
}

impl OutFormat {
    /// The format named by a path's extension (case-insensitive), if it is one we write.
    pub fn from_extension(path: &Path) -> Option<OutFormat> {
        path.extension()?.to_str()?.parse().ok()
    }

    /// Whether the format can store 16-bit samples.
    pub fn supports_16bit(self) -> bool {
        matches!(self, OutFormat::Png | OutFormat::Tiff)
    }

    /// Whether the format can store an alpha channel.
    pub fn supports_alpha(self) -> bool {
        self != OutFormat::Jpeg
    }

    fn max_dimension(self) -> u32 {
        match self {
            OutFormat::Jpeg => 65_535,
            OutFormat::Webp => 16_384,
            OutFormat::Png | OutFormat::Bmp | OutFormat::Tiff => i32::MAX as u32,
        }
    }
}

impl fmt::Display for OutFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutFormat::Png => "PNG",
            OutFormat::Jpeg => "JPEG",
            OutFormat::Webp => "WebP",
            OutFormat::Bmp => "BMP",
            OutFormat::Tiff => "TIFF",
        })
    }
}

impl FromStr for OutFormat {
    type Err = Error;

    /// Accepts `png`, `jpg`, `jpeg`, `webp`, `bmp`, `tif` and `tiff`, in any case.
    fn from_str(s: &str) -> Result<OutFormat> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "png" => OutFormat::Png,
            "jpg" | "jpeg" => OutFormat::Jpeg,
            "webp" => OutFormat::Webp,
            "bmp" => OutFormat::Bmp,
            "tif" | "tiff" => OutFormat::Tiff,
            _ => {
                return Err(Error::Usage(format!(
                    "unknown output format '{s}' (expected png, jpg, jpeg, webp, bmp, tif or tiff)"
                )))
            }
        })
    }
}

/// How to encode an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    pub format: OutFormat,
    /// JPEG quality, 1..=100; `None` means [`DEFAULT_JPEG_QUALITY`]. Must be `None` for the
    /// other formats, which are all written losslessly.
    pub quality: Option<u8>,
    /// ICC profile to embed (usually the input's). Dropped only for BMP, see the module docs.
    pub icc: Option<Vec<u8>>,
}

impl EncodeOptions {
    /// Options for `format` with default quality and no ICC profile.
    pub fn new(format: OutFormat) -> Self {
        EncodeOptions { format, quality: None, icc: None }
    }

    /// Checks that an image of this shape can be written with these options, so a caller can
    /// reject a bad combination before spending time producing the pixels. Every problem is an
    /// [`Error::Usage`]: 16-bit samples or alpha the format cannot store, a quality setting for
    /// a lossless format or out of 1..=100, dimensions beyond the format's maximum, an ICC
    /// profile too large for JPEG.
    pub fn check(&self, width: u32, height: u32, channels: u8, bit_depth: u8) -> Result<()> {
        let format = self.format;
        if !(1..=4).contains(&channels) {
            return Err(Error::Usage(format!(
                "cannot encode an image with {channels} channels (expected 1 to 4)"
            )));
        }
        if bit_depth != 8 && bit_depth != 16 {
            return Err(Error::Usage(format!("cannot encode {bit_depth}-bit samples (expected 8 or 16)")));
        }
        if width == 0 || height == 0 {
            return Err(Error::Usage(format!("cannot encode an empty {width}x{height} image")));
        }
        if bit_depth == 16 && !format.supports_16bit() {
            return Err(Error::Usage(format!(
                "{format} cannot store 16-bit samples; write PNG or TIFF to keep the full precision"
            )));
        }
        if (channels == 2 || channels == 4) && !format.supports_alpha() {
            return Err(Error::Usage(format!(
                "{format} cannot store an alpha channel; write PNG, WebP or TIFF to keep the transparency"
            )));
        }
        match (self.quality, format) {
            (Some(q), OutFormat::Jpeg) if !(1..=100).contains(&q) => {
                return Err(Error::Usage(format!("JPEG quality must be between 1 and 100, not {q}")));
            }
            (Some(_), OutFormat::Jpeg) | (None, _) => {}
            (Some(_), _) => {
                return Err(Error::Usage(format!(
                    "a quality setting only applies to JPEG; {format} output is always lossless"
                )));
            }
        }
        let max = format.max_dimension();
        if width > max || height > max {
            return Err(Error::Usage(format!(
                "{format} cannot store a {width}x{height} image (at most {max} pixels per side); write PNG or TIFF"
            )));
        }
        if format == OutFormat::Jpeg && self.icc.as_ref().is_some_and(|p| p.len() > JPEG_MAX_ICC) {
            return Err(Error::Usage(format!(
                "the ICC profile is too large for JPEG (at most {JPEG_MAX_ICC} bytes)"
            )));
        }
        Ok(())
    }
}

/// Encodes `img` into `w`. Errors from `w` are [`Error::Io`] naming `<output stream>`; option
/// problems are [`Error::Usage`] (see [`EncodeOptions::check`]). TIFF is assembled in memory
/// first because its writer needs to seek.
pub fn encode_to_writer(w: &mut impl Write, img: &ImageView, opts: &EncodeOptions) -> Result<()> {
    let name = Path::new("<output stream>");
    let pixels = prepare(img, opts)?;
    if opts.format == OutFormat::Tiff {
        let mut buf = Cursor::new(Vec::new());
        write_tiff(&mut buf, &pixels, opts, name)?;
        w.write_all(buf.get_ref()).map_err(|e| Error::io(name, e))?;
    } else {
        write_sequential(w, &pixels, opts, name)?;
    }
    w.flush().map_err(|e| Error::io(name, e))
}

/// Encodes `img` and writes it to `path` atomically (see [`write_atomic`]): on any error no file
/// is left at `path`, and an existing file there is untouched. Options are checked before any
/// file is created.
pub fn write_image_atomic(path: &Path, img: &ImageView, opts: &EncodeOptions) -> Result<()> {
    let pixels = prepare(img, opts)?;
    write_atomic(path, |w| {
        if opts.format == OutFormat::Tiff {
            write_tiff(w, &pixels, opts, path)
        } else {
            write_sequential(w, &pixels, opts, path)
        }
    })
}

/// Pixels in the byte layout the `image` encoders take.
struct Prepared<'a> {
    bytes: Cow<'a, [u8]>,
    color: ExtendedColorType,
    width: u32,
    height: u32,
}

fn prepare<'a>(img: &ImageView<'a>, opts: &EncodeOptions) -> Result<Prepared<'a>> {
    opts.check(img.width, img.height, img.channels, img.bit_depth())?;
    let expected = u64::from(img.width) * u64::from(img.height) * u64::from(img.channels);
    if img.samples.len() as u64 != expected {
        return Err(Error::Usage(format!(
            "image buffer holds {} samples but {}x{}x{} needs {expected}",
            img.samples.len(),
            img.width,
            img.height,
            img.channels
        )));
    }
    // The TIFF encoder has no gray+alpha layout, and the BMP encoder writes gray+alpha as a
    // palette image without the alpha; RGBA holds the same information in both.
    let expand = img.channels == 2 && matches!(opts.format, OutFormat::Tiff | OutFormat::Bmp);
    let channels = if expand { 4 } else { img.channels };
    let bytes: Cow<'a, [u8]> = match img.samples {
        SamplesRef::U8(s) if expand => {
            Cow::Owned(s.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect())
        }
        SamplesRef::U16(s) if expand => Cow::Owned(
            s.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).flat_map(u16::to_ne_bytes).collect(),
        ),
        SamplesRef::U8(s) => Cow::Borrowed(s),
        // The encoders take 16-bit samples as native-endian bytes.
        SamplesRef::U16(s) => Cow::Borrowed(bytemuck::cast_slice(s)),
    };
    let color = match (channels, img.bit_depth()) {
        (1, 8) => ExtendedColorType::L8,
        (2, 8) => ExtendedColorType::La8,
        (3, 8) => ExtendedColorType::Rgb8,
        (4, 8) => ExtendedColorType::Rgba8,
        (1, _) => ExtendedColorType::L16,
        (2, _) => ExtendedColorType::La16,
        (3, _) => ExtendedColorType::Rgb16,
        _ => ExtendedColorType::Rgba16,
    };
    Ok(Prepared { bytes, color, width: img.width, height: img.height })
}

/// PNG, JPEG, WebP and BMP: encoders that only append to `w`.
fn write_sequential<W: Write>(w: &mut W, p: &Prepared, opts: &EncodeOptions, name: &Path) -> Result<()> {
    let failed = |e: ImageError| encode_error(name, opts.format, e);
    let icc = opts.icc.as_ref().filter(|p| !p.is_empty());
    match opts.format {
        OutFormat::Png => write_png(w, p, icc).map_err(|e| match e {
            png::EncodingError::IoError(e) => Error::io(name, e),
            e => Error::Usage(format!("cannot write PNG: {e}")),
        }),
        OutFormat::Jpeg => {
            let quality = opts.quality.unwrap_or(DEFAULT_JPEG_QUALITY);
            let mut encoder = JpegEncoder::new_with_quality(w, quality);
            set_icc(&mut encoder, icc, opts.format)?;
            encoder.write_image(&p.bytes, p.width, p.height, p.color).map_err(failed)
        }
        OutFormat::Webp => {
            let mut encoder = WebPEncoder::new_lossless(w);
            set_icc(&mut encoder, icc, opts.format)?;
            encoder.write_image(&p.bytes, p.width, p.height, p.color).map_err(failed)
        }
        // No ICC: the BMP encoder's headers cannot carry one (see the module docs).
        OutFormat::Bmp => {
            BmpEncoder::new(w).write_image(&p.bytes, p.width, p.height, p.color).map_err(failed)
        }
        OutFormat::Tiff => Err(Error::Usage("TIFF needs a seekable writer".into())),
    }
}

/// PNG through the `png` crate's streaming writer, with the defaults of `image`'s `PngEncoder`
/// (fast `fdeflate` compression, adaptive filter): rows are filtered, compressed and written as
/// IDAT chunks as they go. `image`'s encoder compresses the whole image into memory before
/// writing it (44 MB for a 7680x4320 upscaled photo, up to the raw size for noise) and byte-swaps
/// a full copy of 16-bit images; here the extra memory is a few rows and one chunk.
fn write_png<W: Write>(
    w: &mut W,
    p: &Prepared,
    icc: Option<&Vec<u8>>,
) -> std::result::Result<(), png::EncodingError> {
    let (color, depth) = match p.color {
        ExtendedColorType::L8 => (png::ColorType::Grayscale, png::BitDepth::Eight),
        ExtendedColorType::La8 => (png::ColorType::GrayscaleAlpha, png::BitDepth::Eight),
        ExtendedColorType::Rgb8 => (png::ColorType::Rgb, png::BitDepth::Eight),
        ExtendedColorType::Rgba8 => (png::ColorType::Rgba, png::BitDepth::Eight),
        ExtendedColorType::L16 => (png::ColorType::Grayscale, png::BitDepth::Sixteen),
        ExtendedColorType::La16 => (png::ColorType::GrayscaleAlpha, png::BitDepth::Sixteen),
        ExtendedColorType::Rgb16 => (png::ColorType::Rgb, png::BitDepth::Sixteen),
        _ => (png::ColorType::Rgba, png::BitDepth::Sixteen),
    };
    let mut info = png::Info::with_size(p.width, p.height);
    info.icc_profile = icc.map(|v| Cow::Borrowed(v.as_slice()));
    let mut encoder = png::Encoder::with_info(w, info)?;
    encoder.set_color(color);
    encoder.set_depth(depth);
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::Filter::Adaptive);
    let mut writer = encoder.write_header()?;
    let mut stream = writer.stream_writer_with_size(PNG_IDAT_CHUNK)?;
    if depth == png::BitDepth::Sixteen && cfg!(target_endian = "little") {
        // PNG stores 16-bit samples big-endian; ours are native-endian.
        let row_bytes = p.bytes.len() / p.height as usize;
        let mut row = vec![0u8; row_bytes];
        for src in p.bytes.chunks_exact(row_bytes) {
            for (d, s) in row.chunks_exact_mut(2).zip(src.chunks_exact(2)) {
                d.copy_from_slice(&[s[1], s[0]]);
            }
            stream.write_all(&row)?;
        }
    } else {
        stream.write_all(&p.bytes)?;
    }
    stream.finish()?;
    writer.finish()
}

/// IDAT chunk size of the streaming PNG writer: large enough that chunk headers are noise.
const PNG_IDAT_CHUNK: usize = 1 << 20;

fn write_tiff<W: Write + Seek>(w: &mut W, p: &Prepared, opts: &EncodeOptions, name: &Path) -> Result<()> {
    let mut encoder = TiffEncoder::new(w);
    set_icc(&mut encoder, opts.icc.as_ref().filter(|p| !p.is_empty()), opts.format)?;
    encoder.write_image(&p.bytes, p.width, p.height, p.color).map_err(|e| encode_error(name, opts.format, e))
}

fn set_icc(encoder: &mut impl ImageEncoder, icc: Option<&Vec<u8>>, format: OutFormat) -> Result<()> {
    match icc {
        Some(profile) => encoder
            .set_icc_profile(profile.clone())
            .map_err(|e| Error::Usage(format!("cannot embed the ICC profile in {format}: {e}"))),
        None => Ok(()),
    }
}

fn encode_error(name: &Path, format: OutFormat, e: ImageError) -> Error {
    match e {
        ImageError::IoError(e) => Error::io(name, e),
        // Shapes and options were checked up front, so this is a limit of the encoder itself.
        e => Error::Usage(format!("cannot write {format}: {e}")),
    }
}

#[cfg(test)]
mod tests;
