//! YUV4MPEG2 streams. Reading goes through the `y4m` crate; its header tokens we need beyond
//! width/height/rate/aspect/colorspace (interlacing `I` and the `X` extensions such as ffmpeg's
//! `XCOLORRANGE`) are parsed from the raw header it exposes. Writing is our own, because the
//! crate's encoder cannot emit an `I` tag and the output must carry the input's tags.

use super::color::{Siting, Subsampling, YuvFrame};
use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a Y4M header says, in the terms the pipeline needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Y4mHeader {
    pub width: usize,
    pub height: usize,
    pub fps: (usize, usize),
    pub aspect: (usize, usize),
    /// The `I` tag's value (`p`, `t`, `b`, `m`, or `?`), if present.
    pub interlace: Option<char>,
    /// The `C` tag's value as written (e.g. `420jpeg`, `420p10`), if present.
    pub colorspace_tag: Option<String>,
    pub subsampling: Subsampling,
    pub siting: Siting,
    pub bits: u32,
    /// `X` extension values (without the `X`), in order.
    pub extensions: Vec<String>,
}

impl Y4mHeader {
    /// `XCOLORRANGE=FULL`, which ffmpeg writes for full-range video.
    pub fn full_range(&self) -> bool {
        self.extensions.iter().any(|x| x.eq_ignore_ascii_case("COLORRANGE=FULL"))
    }

    /// Whether the stream is interlaced (anything but progressive or unknown).
    pub fn interlaced(&self) -> bool {
        matches!(self.interlace, Some('t' | 'b' | 'm'))
    }

    /// The same stream description at another frame size.
    pub fn with_size(&self, width: usize, height: usize) -> Y4mHeader {
        Y4mHeader { width, height, ..self.clone() }
    }

    fn colorspace_token(&self) -> String {
        if let Some(t) = &self.colorspace_tag {
            return t.clone();
        }
        let depth = if self.bits > 8 { format!("p{}", self.bits) } else { String::new() };
        match self.subsampling {
            Subsampling::Mono => {
                if self.bits > 8 {
                    format!("mono{}", self.bits)
                } else {
                    "mono".into()
                }
            }
            Subsampling::S420 if self.bits == 8 => match self.siting {
                Siting::Center => "420jpeg".into(),
                Siting::Left => "420mpeg2".into(),
                Siting::TopLeft => "420paldv".into(),
            },
            Subsampling::S420 => format!("420{depth}"),
            Subsampling::S422 => format!("422{depth}"),
            Subsampling::S444 => format!("444{depth}"),
        }
    }

    /// The header line, including the final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("YUV4MPEG2 W{} H{} F{}:{}", self.width, self.height, self.fps.0, self.fps.1);
        if let Some(i) = self.interlace {
            s.push_str(&format!(" I{i}"));
        }
        s.push_str(&format!(" A{}:{}", self.aspect.0, self.aspect.1));
        s.push_str(&format!(" C{}", self.colorspace_token()));
        for x in &self.extensions {
            s.push_str(&format!(" X{x}"));
        }
        s.push('\n');
        s.into_bytes()
    }

    fn bytes_per_sample(&self) -> usize {
        if self.bits > 8 {
            2
        } else {
            1
        }
    }

    /// Bytes of one frame's planes.
    pub fn frame_bytes(&self) -> usize {
        let (cw, ch) = self.subsampling.chroma_size(self.width, self.height);
        (self.width * self.height + 2 * cw * ch) * self.bytes_per_sample()
    }
}

/// Counts bytes consumed, so a truncated frame can be told from a clean end of stream (the `y4m`
/// crate reports both as EOF).
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

/// Longest stream or frame header line: the `y4m` crate's fixed buffer, which no option can
/// raise (real headers are well under 100 bytes).
pub const MAX_HEADER_BYTES: usize = 1024;

/// The header line (with its newline), read byte by byte so nothing past it is consumed.
fn read_header_line<R: Read>(r: &mut R, name: &Path) -> Result<Vec<u8>> {
    let mut line = Vec::with_capacity(64);
    let mut b = [0u8];
    while line.len() < MAX_HEADER_BYTES {
        match r.read(&mut b) {
            Ok(0) => return Ok(line),
            Ok(_) => {
                line.push(b[0]);
                if b[0] == b'\n' {
                    return Ok(line);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(name, e)),
        }
    }
    Err(Error::input(
        name,
        format!(
            "the Y4M header line is longer than the limit of {} bytes (fixed; real headers are under 100 bytes)",
            MAX_HEADER_BYTES - 1
        ),
    ))
}

/// Width and height from a header line, when both parse: checked against the pixel limit
/// before the `y4m` crate multiplies them.
fn header_size(line: &[u8]) -> Option<(u64, u64)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    // Token by token, as the crate reads them (the line as a whole need not be UTF-8); the last
    // occurrence wins, as in the crate's parser.
    let field = |k: u8| {
        line.split(|&b| b == b' ')
            .filter_map(|t| std::str::from_utf8(t.strip_prefix(&[k])?).ok()?.parse::<u64>().ok())
            .last()
    };
    Some((field(b'W')?, field(b'H')?))
}

type Inner<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

pub struct Y4mReader<R: Read> {
    dec: y4m::Decoder<Counting<Inner<R>>>,
    count: Arc<AtomicU64>,
    header: Y4mHeader,
    name: PathBuf,
    frames: usize,
}

fn ratio(r: y4m::Ratio) -> (usize, usize) {
    (r.num, r.den)
}

impl<R: Read> Y4mReader<R> {
    /// Read and check the stream header. `max_pixels` bounds the frame size (an `Error::Limit`
    /// naming `--max-pixels` beyond it); the header line itself is limited to 1 KiB.
    pub fn new(mut reader: R, name: &Path, max_pixels: u64) -> Result<Self> {
        let line = read_header_line(&mut reader, name)?;
        if let Some((w, h)) = header_size(&line) {
            if w.saturating_mul(h) > max_pixels {
                return Err(Error::Limit {
                    what: format!("{}: Y4M frame of {w}x{h} pixels", name.display()),
                    value: w.saturating_mul(h),
                    limit: max_pixels,
                    flag: "--max-pixels".into(),
                });
            }
        }
        let count = Arc::new(AtomicU64::new(0));
        let counting = Counting { inner: std::io::Cursor::new(line).chain(reader), n: count.clone() };
        let bad = |why: String| Error::input(name, why);
        // Frame bytes for max_pixels 4:4:4 16-bit: the crate refuses anything larger up front.
        let limits =
            y4m::Limits { bytes: usize::try_from(max_pixels.saturating_mul(6)).unwrap_or(usize::MAX) };
        let dec = y4m::Decoder::new_with_limits(counting, limits).map_err(|e| match e {
            y4m::Error::EOF => bad("truncated Y4M header (or an empty stream)".into()),
            y4m::Error::UnknownColorspace => bad("unsupported Y4M colorspace tag (supported: 420jpeg, 420mpeg2, 420paldv, 420, 420p10, 420p12, 422, 422p10, 422p12, 444, 444p10, 444p12, mono, mono12)".into()),
            // Unreachable after the pixel check above (6 bytes per pixel covers every layout);
            // kept so a change in the crate cannot turn into a panic or a vague message.
            y4m::Error::OutOfMemory => Error::Limit {
                what: format!("{}: Y4M frame size in bytes", name.display()),
                value: max_pixels.saturating_mul(6).saturating_add(1),
                limit: max_pixels.saturating_mul(6),
                flag: "--max-pixels".into(),
            },
            y4m::Error::IoError(io) => Error::io(name, io),
            other => bad(format!("not a valid Y4M header: {other}")),
        })?;
        let raw = String::from_utf8_lossy(dec.get_raw_params()).into_owned();
        let mut interlace = None;
        let mut colorspace_tag = None;
        let mut extensions = Vec::new();
        for tok in raw.split(' ').filter(|t| !t.is_empty()) {
            // The tag is one character, not one byte: a non-ASCII first byte (lossily decoded)
            // must not split a character (a fuzzer finding).
            let mut chars = tok.chars();
            let (k, v) = (chars.next(), chars.as_str());
            match k {
                Some('I') => interlace = v.chars().next(),
                Some('C') => colorspace_tag = Some(v.to_string()),
                Some('X') => extensions.push(v.to_string()),
                _ => {}
            }
        }
        use y4m::Colorspace as C;
        let cs = dec.get_colorspace();
        let (subsampling, siting) = match cs {
            C::Cmono | C::Cmono12 => (Subsampling::Mono, Siting::Center),
            C::C420mpeg2 => (Subsampling::S420, Siting::Left),
            C::C420paldv => (Subsampling::S420, Siting::TopLeft),
            C::C420 | C::C420jpeg | C::C420p10 | C::C420p12 => (Subsampling::S420, Siting::Center),
            C::C422 | C::C422p10 | C::C422p12 => (Subsampling::S422, Siting::Left),
            C::C444 | C::C444p10 | C::C444p12 => (Subsampling::S444, Siting::Center),
            _ => return Err(bad(format!("unsupported Y4M colorspace {cs:?}"))),
        };
        let (width, height) = (dec.get_width(), dec.get_height());
        if (width as u64).saturating_mul(height as u64) > max_pixels {
            return Err(Error::Limit {
                what: format!("{}: Y4M frame of {width}x{height} pixels", name.display()),
                value: width as u64 * height as u64,
                limit: max_pixels,
                flag: "--max-pixels".into(),
            });
        }
        let header = Y4mHeader {
            width,
            height,
            fps: ratio(dec.get_framerate()),
            aspect: ratio(dec.get_pixel_aspect()),
            interlace,
            colorspace_tag,
            subsampling,
            siting,
            bits: dec.get_bit_depth() as u32,
            extensions,
        };
        if header.fps.0 == 0 || header.fps.1 == 0 {
            return Err(bad(format!("frame rate {}:{} is not valid", header.fps.0, header.fps.1)));
        }
        Ok(Y4mReader { dec, count, header, name: name.to_path_buf(), frames: 0 })
    }

    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    /// The next frame, or `None` at a clean end of the stream. A frame cut short is an error.
    pub fn read_frame(&mut self) -> Result<Option<YuvFrame>> {
        let before = self.count.load(Ordering::Relaxed);
        let frame = match self.dec.read_frame() {
            Ok(f) => f,
            Err(y4m::Error::EOF) => {
                if self.count.load(Ordering::Relaxed) == before {
                    return Ok(None);
                }
                return Err(Error::input(&self.name, format!("Y4M frame {} is truncated", self.frames)));
            }
            Err(y4m::Error::IoError(e)) => return Err(Error::io(&self.name, e)),
            Err(e) => return Err(Error::input(&self.name, format!("Y4M frame {}: {e}", self.frames))),
        };
        let h = &self.header;
        let plane = |b: &[u8]| -> Vec<u16> {
            if h.bits > 8 {
                b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
            } else {
                b.iter().map(|&v| v as u16).collect()
            }
        };
        let f = YuvFrame {
            width: h.width,
            height: h.height,
            y: plane(frame.get_y_plane()),
            u: plane(frame.get_u_plane()),
            v: plane(frame.get_v_plane()),
        };
        self.frames += 1;
        Ok(Some(f))
    }
}

/// Writes a Y4M stream: the header at creation, then one `FRAME` per call, flushed each time so a
/// downstream process sees frames as they are made.
pub struct Y4mWriter<W: Write> {
    w: W,
    header: Y4mHeader,
}

impl<W: Write> Y4mWriter<W> {
    pub fn new(mut w: W, header: Y4mHeader) -> std::io::Result<Self> {
        w.write_all(&header.to_bytes())?;
        w.flush()?;
        Ok(Y4mWriter { w, header })
    }

    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    pub fn write_frame(&mut self, f: &YuvFrame) -> std::io::Result<()> {
        let h = &self.header;
        let (cw, ch) = h.subsampling.chroma_size(h.width, h.height);
        assert_eq!(
            (f.width, f.height, f.y.len(), f.u.len(), f.v.len()),
            (h.width, h.height, h.width * h.height, cw * ch, cw * ch),
            "frame does not match the stream header"
        );
        let mut buf = Vec::with_capacity(6 + h.frame_bytes());
        buf.extend_from_slice(b"FRAME\n");
        for p in [&f.y, &f.u, &f.v] {
            if h.bits > 8 {
                for &v in p.iter() {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            } else {
                buf.extend(p.iter().map(|&v| v as u8));
            }
        }
        self.w.write_all(&buf)?;
        self.w.flush()
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bits: u32, s: Subsampling, siting: Siting) -> Y4mHeader {
        Y4mHeader {
            width: 5,
            height: 3,
            fps: (30000, 1001),
            aspect: (16, 15),
            interlace: Some('p'),
            colorspace_tag: None,
            subsampling: s,
            siting,
            bits,
            extensions: vec!["COLORRANGE=FULL".into(), "YSCSS=420JPEG".into()],
        }
    }

    fn frame(h: &Y4mHeader, seed: u16) -> YuvFrame {
        let (cw, ch) = h.subsampling.chroma_size(h.width, h.height);
        let max = (1u32 << h.bits) - 1;
        let v =
            |n: usize, k: u16| (0..n).map(|i| ((i as u32 * 97 + k as u32 * 13) % (max + 1)) as u16).collect();
        YuvFrame {
            width: h.width,
            height: h.height,
            y: v(h.width * h.height, seed),
            u: v(cw * ch, seed + 1),
            v: v(cw * ch, seed + 2),
        }
    }

    #[test]
    fn write_read_round_trip_is_exact() {
        for (bits, s, siting) in [
            (8, Subsampling::S420, Siting::Center),
            (8, Subsampling::S420, Siting::Left),
            (8, Subsampling::S420, Siting::TopLeft),
            (10, Subsampling::S420, Siting::Center),
            (8, Subsampling::S422, Siting::Left),
            (10, Subsampling::S444, Siting::Center),
            (8, Subsampling::Mono, Siting::Center),
        ] {
            let h = header(bits, s, siting);
            let frames: Vec<YuvFrame> = (0..3).map(|i| frame(&h, i)).collect();
            let mut w = Y4mWriter::new(Vec::new(), h.clone()).unwrap();
            for f in &frames {
                w.write_frame(f).unwrap();
            }
            let bytes = w.into_inner();
            let mut r = Y4mReader::new(&bytes[..], Path::new("mem"), 1 << 20).unwrap();
            let mut got_h = r.header().clone();
            got_h.colorspace_tag = None;
            assert_eq!(got_h, h, "{bits}-bit {s:?} {siting:?}");
            assert!(r.header().full_range() && !r.header().interlaced());
            for f in &frames {
                assert_eq!(r.read_frame().unwrap().as_ref(), Some(f));
            }
            assert_eq!(r.read_frame().unwrap(), None);
            // Every truncation inside a frame is an error; at a frame boundary it is a clean end.
            let hdr_len = h.to_bytes().len();
            let per = 6 + h.frame_bytes();
            for cut in hdr_len..bytes.len() {
                let mut r = Y4mReader::new(&bytes[..cut], Path::new("mem"), 1 << 20).unwrap();
                let mut res = Ok(Some(()));
                while let Ok(Some(_)) = res {
                    res = r.read_frame().map(|f| f.map(|_| ()));
                }
                let at_boundary = (cut - hdr_len) % per == 0;
                assert_eq!(res.is_ok(), at_boundary, "cut at {cut}: {res:?}");
            }
        }
    }

    #[test]
    fn non_ascii_header_tokens_are_ignored() {
        // Found by fuzz/y4m: a token starting with a byte that is not UTF-8 panicked.
        let crash = b"YUV4MPEG2 W2 H2 \xb9\xff I\xc3\xa9 X\xe2\x82\xac=1\n";
        let r = Y4mReader::new(&crash[..], Path::new("c.y4m"), 1 << 20).unwrap();
        assert_eq!((r.header().width, r.header().height), (2, 2));
        assert_eq!(r.header().interlace, Some('\u{e9}'));
        assert_eq!(r.header().extensions, ["\u{20ac}=1"]);
        let mut artifact = b"YUV4MPEG2 W1 H1 ".to_vec();
        artifact.extend_from_slice(&[0xf0, 0x9f, 0x98, b' ', b'\n']);
        assert!(Y4mReader::new(&artifact[..], Path::new("c.y4m"), 1 << 20).is_ok());
        let found: &[u8] = include_bytes!("../../tests/fixtures/fuzz/y4m-split-char.y4m");
        let mut r = Y4mReader::new(found, Path::new("f.y4m"), 1 << 20).unwrap();
        while let Ok(Some(_)) = r.read_frame() {}
    }

    #[test]
    fn bad_headers() {
        let err = |b: &[u8]| Y4mReader::new(b, Path::new("x.y4m"), 1 << 20).err().unwrap().to_string();
        assert!(err(b"").contains("truncated"));
        assert!(err(b"YUV4MPEG2 W4 H4 F25:1 C420").contains("truncated"));
        assert!(err(b"YUV4MPEG2 W4 H4 F25:1 Cabc\n").contains("colorspace"));
        assert!(err(b"RIFF....").contains("x.y4m"));
        assert!(err(b"YUV4MPEG2 W0 H4 F25:1\n").contains("x.y4m"));
        assert!(err(b"YUV4MPEG2 W4 H4 F0:1\n").contains("frame rate"));
        let big = Y4mReader::new(&b"YUV4MPEG2 W100000 H100000 F25:1 C444\n"[..], Path::new("b"), 1 << 20)
            .err()
            .unwrap();
        assert!(matches!(big, Error::Limit { value: 10_000_000_000, .. }), "{big}");
        assert!(big.to_string().contains("--max-pixels"), "{big}");
        // Sizes whose product overflows are refused before anything multiplies them.
        let huge = format!("YUV4MPEG2 W{0} H{0} F25:1\n", u64::MAX);
        let e = Y4mReader::new(huge.as_bytes(), Path::new("h"), 1 << 20).err().unwrap();
        assert!(matches!(e, Error::Limit { value: u64::MAX, .. }), "{e}");
        let twice = format!("YUV4MPEG2 W4 H4 W{0} H{0} F25:1\n", 1u64 << 40);
        let e = Y4mReader::new(twice.as_bytes(), Path::new("h"), 1 << 20).err().unwrap();
        assert!(matches!(e, Error::Limit { .. }), "{e}");
        let mut bad_utf8 = format!("YUV4MPEG2 W{0} H{0} F25:1 X", 1u64 << 40).into_bytes();
        bad_utf8.extend_from_slice(b"\xff\n");
        let e = Y4mReader::new(&bad_utf8[..], Path::new("h"), 1 << 20).err().unwrap();
        assert!(matches!(e, Error::Limit { .. }), "{e}");
        let long = format!("YUV4MPEG2 W4 H4 F25:1 X{}\n", "a".repeat(2000));
        let e = Y4mReader::new(long.as_bytes(), Path::new("l.y4m"), 1 << 20).err().unwrap();
        assert!(matches!(e, Error::Input { .. }) && e.to_string().contains("l.y4m"), "{e}");
        assert!(e.to_string().contains("limit of 1023 bytes"), "{e}");
        // A header of exactly the longest length still reads.
        let pad = MAX_HEADER_BYTES - "YUV4MPEG2 W4 H4 F25:1 X\n".len();
        let ok = format!("YUV4MPEG2 W4 H4 F25:1 X{}\n", "a".repeat(pad));
        assert_eq!(ok.len(), MAX_HEADER_BYTES);
        assert!(Y4mReader::new(ok.as_bytes(), Path::new("ok"), 1 << 20).is_ok());
    }
}
