//! `superres video`: a Y4M (file or pipe) or a directory of frames in, the same out.

use crate::progress::Progress;
use crate::{cpu_level, ModelArgs};
use clap::Args;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use superres::io::color::{rgb_to_yuv, yuv_to_rgb, Matrix, Range, Siting, Subsampling, YuvFormat};
use superres::io::image::{self as img, DecodeLimits, EncodeOptions, ImageView, OutFormat, SamplesRef};
use superres::io::y4m::{Y4mHeader, Y4mReader, Y4mWriter};
use superres::models::EdgePolicy;
use superres::pipeline::video::{RgbFrame, VideoStream};
use superres::pipeline::{UpscaleOptions, Upscaler};
use superres::{Error, Result};

#[derive(Args, Debug)]
pub struct VideoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A .y4m file, `-` for Y4M on stdin, or a directory of frames.
    #[arg(value_name = "INPUT")]
    pub input: String,
    /// A .y4m file, `-` for Y4M on stdout, or a directory (one image per frame).
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    pub output: String,
    /// How windows are completed at the clip ends: replicate, reflection, reflection_circle
    /// (EDVR's default, as BasicSR tests it) or tdan (TDAN's default, its evaluation rule).
    #[arg(long, value_name = "POLICY")]
    pub edge: Option<String>,
    /// Bits per sample of output frame images (default: 8 for 8-bit input, else 16).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["8", "16"]))]
    pub depth: Option<String>,
    /// YUV matrix of the Y4M stream (Y4M has no tag for it; ffmpeg assumes BT.601 when untagged).
    #[arg(long, default_value = "bt601", value_name = "bt601|bt709")]
    pub matrix: String,
    /// YUV range (default: limited, or full when the header has XCOLORRANGE=FULL).
    #[arg(long, value_name = "limited|full")]
    pub range: Option<String>,
    /// Frame rate when writing Y4M from a directory of frames, as N or N/D.
    #[arg(long, default_value = "25", value_name = "FPS")]
    pub fps: String,
    /// Process interlaced Y4M as progressive frames (the interlacing tag is carried).
    #[arg(long)]
    pub allow_interlaced: bool,
    #[command(flatten)]
    pub tta: crate::TtaArgs,
    /// Tile edge for single-image models (0: automatic).
    #[arg(short = 't', long, default_value_t = 0)]
    pub tile: usize,
    /// Tile context for single-image models (default: the receptive field).
    #[arg(long)]
    pub tile_pad: Option<usize>,
    /// Activation memory budget for automatic tiling, in MiB (default: `upscale`'s, at least
    /// 512, raised where `upscale` raises its default; a given value is held).
    #[arg(long, value_name = "MIB")]
    pub max_mem: Option<usize>,
    /// Worker threads (default: all available cores).
    #[arg(short = 'j', long)]
    pub threads: Option<usize>,
    /// Progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Largest frame accepted, in pixels.
    #[arg(long)]
    pub max_pixels: Option<u64>,
    /// Redo frame images that already exist in the output directory (by default they are
    /// skipped, so a rerun of a killed run resumes).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub shard: crate::ShardArgs,
}

/// Where frames come from.
enum Source {
    Y4m(Box<Y4mReader<Box<dyn Read>>>, YuvFormat),
    Dir(Vec<PathBuf>, usize),
}

fn parse_fps(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Usage(format!("--fps '{s}': expected N or N/D"));
    let (n, d) = s.split_once(['/', ':']).unwrap_or((s, "1"));
    let (n, d): (usize, usize) = (n.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if n == 0 || d == 0 {
        return Err(bad());
    }
    Ok((n, d))
}

impl Source {
    fn open(input: &str, a: &VideoArgs, max_pixels: u64) -> Result<Source> {
        let path = Path::new(input);
        if input != "-" && path.is_dir() {
            let files = superres::pipeline::batch::walk(path)?;
            if files.is_empty() {
                return Err(Error::input(path, "no image frames in this directory"));
            }
            return Ok(Source::Dir(files, 0));
        }
        let reader: Box<dyn Read> = if input == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            Box::new(BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?))
        };
        let name = if input == "-" { Path::new("<stdin>") } else { path };
        let r = Y4mReader::new(reader, name, max_pixels)?;
        let h = r.header().clone();
        if h.interlaced() && !a.allow_interlaced {
            return Err(Error::input(
                name,
                format!(
                    "the stream is interlaced (I{}); deinterlace first (e.g. ffmpeg -vf bwdif) or pass --allow-interlaced",
                    h.interlace.unwrap_or('?')
                ),
            ));
        }
        let range = match &a.range {
            Some(r) => r.parse()?,
            None if h.full_range() => Range::Full,
            None => Range::Limited,
        };
        let fmt = YuvFormat {
            matrix: a.matrix.parse()?,
            range,
            bits: h.bits,
            subsampling: h.subsampling,
            siting: h.siting,
        };
        Ok(Source::Y4m(Box::new(r), fmt))
    }

    fn total(&self) -> Option<usize> {
        match self {
            Source::Dir(f, _) => Some(f.len()),
            Source::Y4m(..) => None,
        }
    }

    /// The next frame as RGB and its name (the file name for frame directories).
    fn next(&mut self, limits: &DecodeLimits) -> Result<Option<(RgbFrame, Option<PathBuf>)>> {
        match self {
            Source::Y4m(r, fmt) => Ok(r.read_frame()?.map(|f| {
                let data = yuv_to_rgb(&f, fmt);
                (RgbFrame { width: f.width, height: f.height, data }, None)
            })),
            Source::Dir(files, i) => {
                let Some(p) = files.get(*i).cloned() else { return Ok(None) };
                *i += 1;
                let d = img::decode_file(&p, limits)?;
                if d.has_alpha() {
                    return Err(Error::input(&p, "video frames with an alpha channel are not supported"));
                }
                let (max, c) = (if d.bit_depth() == 16 { 65535.0 } else { 255.0 }, d.channels as usize);
                let n = (d.width * d.height) as usize;
                let get = |i: usize| -> f32 {
                    match &d.samples {
                        img::Samples::U8(v) => v[i] as f32 / max,
                        img::Samples::U16(v) => v[i] as f32 / max,
                    }
                };
                let mut data = vec![0.0f32; n * 3];
                for px in 0..n {
                    for k in 0..3 {
                        data[px * 3 + k] = get(px * c + if c == 1 { 0 } else { k });
                    }
                }
                Ok(Some((RgbFrame { width: d.width as usize, height: d.height as usize, data }, Some(p))))
            }
        }
    }

    /// Pass over the next frame without converting it; false at the end of the input.
    fn skip(&mut self) -> Result<bool> {
        match self {
            Source::Y4m(r, _) => Ok(r.read_frame()?.is_some()),
            Source::Dir(files, i) => {
                let more = *i < files.len();
                *i += usize::from(more);
                Ok(more)
            }
        }
    }

    fn input_bits(&self) -> u32 {
        match self {
            Source::Y4m(r, _) => r.header().bits,
            Source::Dir(..) => 8,
        }
    }
}

/// Where frames go.
enum Sink<'a> {
    Y4m(Y4mWriter<&'a mut dyn Write>, YuvFormat),
    Dir { names: FrameNames, depth: u8 },
}

/// Where the frame images of a frames-directory output go: the input frame's file name (as a
/// PNG if that is not an image format we write), or `frame_NNNNNN.png` counted from 1.
#[derive(Clone)]
struct FrameNames {
    dir: PathBuf,
    inputs: Option<Vec<PathBuf>>,
}

impl FrameNames {
    fn path(&self, i: usize) -> PathBuf {
        let file = match self.inputs.as_ref().and_then(|f| f.get(i)).and_then(|p| p.file_name()) {
            Some(n) => self.dir.join(n),
            None => self.dir.join(format!("frame_{:06}.png", i + 1)),
        };
        if OutFormat::from_extension(&file).is_some() {
            file
        } else {
            file.with_extension("png")
        }
    }
}

impl Sink<'_> {
    fn write(&mut self, f: &RgbFrame, index: usize) -> Result<()> {
        match self {
            Sink::Y4m(w, fmt) => {
                let yuv = rgb_to_yuv(&f.data, f.width, f.height, fmt);
                w.write_frame(&yuv).map_err(|e| Error::io("<video output>", e))
            }
            Sink::Dir { names, depth } => {
                let file = names.path(index);
                let format = OutFormat::from_extension(&file).unwrap_or(OutFormat::Png);
                let view =
                    |s| ImageView { width: f.width as u32, height: f.height as u32, channels: 3, samples: s };
                let opts = EncodeOptions::new(format);
                if *depth == 16 {
                    let px: Vec<u16> = f
                        .data
                        .iter()
                        .map(|&v| (v.clamp(0.0, 1.0) * 65535.0).round_ties_even() as u16)
                        .collect();
                    img::write_image_atomic(&file, &view(SamplesRef::U16(&px)), &opts)
                } else {
                    let px: Vec<u8> =
                        f.data.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round_ties_even() as u8).collect();
                    img::write_image_atomic(&file, &view(SamplesRef::U8(&px)), &opts)
                }
            }
        }
    }
}

pub fn run(a: VideoArgs) -> Result<ExitCode> {
    if let Some(n) = a.threads {
        if n == 0 {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Usage(format!("cannot start {n} threads: {e}")))?;
    }
    let limits = DecodeLimits { max_pixels: a.max_pixels.unwrap_or(DecodeLimits::default().max_pixels) };
    let edge: Option<EdgePolicy> = a.edge.as_deref().map(str::parse).transpose()?;
    let shard = a.shard.get()?;
    let out_is_dir = !(a.output == "-" || a.output.ends_with(".y4m"));
    if shard.count > 1 && !out_is_dir {
        return Err(Error::Usage(
            "--shard needs a frames-directory output (-o DIR): shards write disjoint frames".into(),
        ));
    }
    // The clip length, when a shard needs it: frame files, or a pass over a Y4M file.
    let frames = if shard.count > 1 {
        if a.input == "-" {
            return Err(Error::Usage("--shard needs a Y4M file or a frames directory, not stdin".into()));
        }
        let mut probe = Source::open(&a.input, &a, limits.max_pixels)?;
        let mut n = 0;
        while probe.skip()? {
            n += 1;
        }
        Some(n)
    } else {
        None
    };
    let source = Source::open(&a.input, &a, limits.max_pixels)?;
    let model = a.model.open()?;
    let level = cpu_level();
    let tta = a.tta.ensemble()?;
    let mut stream = if model.arch().is_video() {
        VideoStream::temporal_tta(model.build_video(level)?, edge, tta)
    } else {
        let mem = crate::memory_options(a.max_mem, 512);
        let opts = UpscaleOptions {
            tile: a.tile,
            tile_pad: a.tile_pad,
            max_working_bytes: mem.max_working_bytes,
            grow_budget: mem.grow_budget,
            max_grown_bytes: mem.max_grown_bytes,
            tta,
            ..UpscaleOptions::default()
        };
        VideoStream::image(Upscaler::new(model.build(level, a.model.scale)?, opts))
    };
    let out_is_y4m = !out_is_dir;
    let depth: u8 = match &a.depth {
        Some(_) if out_is_y4m => {
            return Err(Error::Usage(
                "--depth applies to frame-directory output; Y4M output keeps the input's bit depth".into(),
            ))
        }
        Some(d) => d.parse().expect("validated by clap"),
        None => {
            if source.input_bits() > 8 {
                16
            } else {
                8
            }
        }
    };
    let names = FrameNames {
        dir: PathBuf::from(&a.output),
        inputs: match &source {
            Source::Dir(f, _) => Some(f.clone()),
            Source::Y4m(..) => None,
        },
    };
    let range = frames.map_or(0..usize::MAX, |n| shard.range(n));
    if out_is_dir {
        // Frames that exist are finished (written atomically): a rerun after a kill skips them.
        let (sel_names, sel_range, overwrite) = (names.clone(), range.clone(), a.overwrite);
        stream.select_outputs(move |i| sel_range.contains(&i) && (overwrite || !sel_names.path(i).exists()));
        // Temporaries a killed run left beside this run's frames.
        let dir = PathBuf::from(&a.output);
        match frames.or(source.total()) {
            Some(n) => {
                let r = if frames.is_some() { range.clone() } else { 0..n };
                let paths: Vec<PathBuf> = r.map(|i| names.path(i)).collect();
                superres::io::atomic::remove_stale_temps(paths.iter().map(PathBuf::as_path))?;
            }
            None => {
                superres::io::atomic::remove_stale_temps_in(&dir, |name| {
                    name.strip_prefix("frame_")
                        .and_then(|r| r.strip_suffix(".png"))
                        .is_some_and(|d| d.len() >= 6 && d.bytes().all(|b| b.is_ascii_digit()))
                })?;
            }
        }
    } else if a.output != "-" {
        superres::io::atomic::remove_stale_temps([Path::new(&a.output)])?;
    }
    let mut progress =
        Progress::new(a.json, a.quiet, source.total().map_or(0, |n| n.min(range.end) - range.start.min(n)));
    let header_for = YuvHeaders {
        input: match &source {
            Source::Y4m(r, fmt) => Some((r.header().clone(), *fmt)),
            Source::Dir(..) => None,
        },
        fps: parse_fps(&a.fps)?,
        matrix: a.matrix.parse()?,
    };
    let mut job = Job {
        source,
        stream,
        limits,
        input: a.input.clone(),
        output: a.output.clone(),
        range: range.clone(),
        progress: &mut progress,
    };

    let result = if a.output == "-" {
        let stdout = std::io::stdout();
        let mut lock = BufWriter::new(stdout.lock());
        let mut slot: Option<&mut dyn Write> = Some(&mut lock);
        job.run(&mut |ow, oh| {
            let (h, fmt) = header_for.at(ow, oh);
            let w = slot.take().expect("one output stream");
            Ok(Sink::Y4m(Y4mWriter::new(w, h).map_err(|e| Error::io("<stdout>", e))?, fmt))
        })
    } else if out_is_y4m {
        let out = PathBuf::from(&a.output);
        let mut n = 0;
        superres::io::write_atomic(&out, |file| {
            let mut slot: Option<&mut dyn Write> = Some(file);
            n = job
                .run(&mut |ow, oh| {
                    let (h, fmt) = header_for.at(ow, oh);
                    let w = slot.take().expect("one output stream");
                    Ok(Sink::Y4m(Y4mWriter::new(w, h).map_err(|e| Error::io(&out, e))?, fmt))
                })?
                .0;
            Ok(())
        })
        .map(|_| (n, 0))
    } else {
        let dir = PathBuf::from(&a.output);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        job.run(&mut |_, _| Ok(Sink::Dir { names: names.clone(), depth }))
    };
    match result {
        Ok((n, skipped)) => {
            progress.summary(n, skipped, 0);
            Ok(ExitCode::SUCCESS)
        }
        // A closed pipe downstream (e.g. `| head`) ends the run quietly, like other filters.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(ExitCode::from(141))
        }
        Err(e) => Err(e),
    }
}

/// How the Y4M output header is made: the input's tags at the new size, or a plain 8-bit 4:2:0
/// stream when the input is a directory of frames.
struct YuvHeaders {
    input: Option<(Y4mHeader, YuvFormat)>,
    fps: (usize, usize),
    matrix: Matrix,
}

impl YuvHeaders {
    fn at(&self, ow: usize, oh: usize) -> (Y4mHeader, YuvFormat) {
        match &self.input {
            Some((h, fmt)) => (h.with_size(ow, oh), *fmt),
            None => {
                let fmt = YuvFormat {
                    matrix: self.matrix,
                    range: Range::Limited,
                    bits: 8,
                    subsampling: Subsampling::S420,
                    siting: Siting::Center,
                };
                let h = Y4mHeader {
                    width: ow,
                    height: oh,
                    fps: self.fps,
                    aspect: (1, 1),
                    interlace: Some('p'),
                    colorspace_tag: None,
                    subsampling: Subsampling::S420,
                    siting: Siting::Center,
                    bits: 8,
                    extensions: Vec::new(),
                };
                (h, fmt)
            }
        }
    }
}

struct Job<'p> {
    source: Source,
    stream: VideoStream,
    limits: DecodeLimits,
    input: String,
    output: String,
    /// The frames this run is responsible for (a shard's share; everything by default).
    range: std::ops::Range<usize>,
    progress: &'p mut Progress,
}

impl Job<'_> {
    /// Read every frame, push it through the stream, and write what comes out; the sink is made
    /// when the first output frame's size is known. Frames no wanted output reads are passed
    /// over without being converted. Returns the frames written and the frames skipped.
    fn run<'w>(
        &mut self,
        make_sink: &mut dyn FnMut(usize, usize) -> Result<Sink<'w>>,
    ) -> Result<(usize, usize)> {
        let start = Instant::now();
        let mut sink: Option<Sink<'w>> = None;
        let mut written = 0usize;
        loop {
            if !self.stream.needs_input(self.stream.received()) {
                if !self.source.skip()? {
                    break;
                }
                let outs = self.stream.push_skipped()?;
                self.emit(outs, &mut sink, make_sink, &mut written, start)?;
                continue;
            }
            let next = self.source.next(&self.limits)?;
            let Some((frame, name)) = next else { break };
            let m = self.stream.size_multiple();
            if frame.width % m != 0 || frame.height % m != 0 {
                return Err(Error::input(
                    name.as_deref().unwrap_or(Path::new(&self.input)),
                    format!(
                        "this model needs frame sides that are multiples of {m}; the frames are {}x{}",
                        frame.width, frame.height
                    ),
                ));
            }
            let outs = self.stream.push_indexed(&frame).map_err(|e| match (e, &name) {
                (Error::Usage(msg), Some(n)) => Error::input(n, msg),
                (Error::Usage(msg), None) => Error::input(&self.input, msg),
                (e, _) => e,
            })?;
            self.emit(outs, &mut sink, make_sink, &mut written, start)?;
        }
        let outs = self.stream.finish_indexed()?;
        self.emit(outs, &mut sink, make_sink, &mut written, start)?;
        let n = self.stream.received();
        if n == 0 {
            return Err(Error::input(&self.input, "the input has no frames"));
        }
        let share = self.range.end.min(n) - self.range.start.min(n);
        Ok((written, share - written))
    }

    fn emit<'w>(
        &mut self,
        frames: Vec<(usize, RgbFrame)>,
        sink: &mut Option<Sink<'w>>,
        make_sink: &mut dyn FnMut(usize, usize) -> Result<Sink<'w>>,
        written: &mut usize,
        start: Instant,
    ) -> Result<()> {
        for (i, f) in frames {
            if sink.is_none() {
                *sink = Some(make_sink(f.width, f.height)?);
            }
            sink.as_mut().expect("created above").write(&f, i)?;
            *written += 1;
            let label = match &self.source {
                Source::Dir(files, _) => files[i].display().to_string(),
                Source::Y4m(..) => format!("frame {}", i + 1),
            };
            self.progress.file(
                &label,
                &self.output,
                "done",
                start.elapsed().as_secs_f64() / *written as f64,
                None,
            );
        }
        Ok(())
    }
}
