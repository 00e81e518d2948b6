//! `superres downscale`: make benchmark LR inputs as the papers made theirs.

use crate::progress::Progress;
use crate::report;
use clap::Args;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Instant;
use superres::io::image::{self as img, DecodeLimits, EncodeOptions, OutFormat};
use superres::kernels::{degrade, imresize};
use superres::pipeline::batch::{self, Job, Sink, Source};
use superres::{Error, Result};

/// The `--help` text.
pub const LONG_ABOUT: &str = "Downscale images exactly as the super-resolution benchmarks were made.\n\n\
    The input is first cropped at the bottom and right to a multiple of N (the papers' modcrop).\n\
    bicubic: MATLAB imresize(img, 1/N, 'bicubic') bit for bit (antialiased Keys cubic, clamped \
    edges, rows then columns, rounded after each pass); this is the \"BI\" degradation of the SISR \
    sets and Vid4 BI.\n\
    bd: the x4 \"BD\" degradation of the video papers (DUF/BasicSR): 13x13 Gaussian blur with \
    sigma 1.6, reflect padding, every 4th pixel from offset 0.\n\n\
    Sample depth (8/16-bit), channels (gray, alpha) and ICC profiles are kept.";

#[derive(Args, Debug)]
pub struct DownscaleArgs {
    /// Input images or directories (`-` reads one image from stdin).
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// More inputs (same as positional INPUT).
    #[arg(short = 'i', long = "input", value_name = "INPUT")]
    pub input_opts: Vec<String>,
    /// Output file, or directory for several inputs / a directory input (`-` writes to stdout).
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    pub output: String,
    /// Downscaling factor.
    #[arg(short = 's', long, value_name = "N")]
    pub scale: usize,
    /// Degradation: MATLAB bicubic (BI) or the x4 Gaussian blur-downsample (BD).
    #[arg(long, default_value = "bicubic", value_parser = clap::builder::PossibleValuesParser::new(["bicubic", "bd"]))]
    pub kernel: String,
    /// Output format (default: from the output's extension; in directory mode, the input's).
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// JPEG quality, 1-100 (default 95). Lossy output defeats the purpose; prefer PNG.
    #[arg(long, value_name = "Q")]
    pub quality: Option<u8>,
    /// Redo outputs that already exist (by default they are skipped).
    #[arg(long)]
    pub overwrite: bool,
    /// Progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Largest input image accepted, in pixels.
    #[arg(long, value_name = "N")]
    pub max_pixels: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Bicubic,
    Bd,
}

pub fn run(a: DownscaleArgs) -> Result<ExitCode> {
    if a.scale == 0 {
        return Err(Error::Usage("--scale must be at least 1".into()));
    }
    let kernel = if a.kernel == "bd" { Kernel::Bd } else { Kernel::Bicubic };
    if kernel == Kernel::Bd && a.scale != 4 {
        return Err(Error::Usage(format!(
            "--kernel bd is the x4 degradation of the video papers; it is not defined for --scale {}",
            a.scale
        )));
    }
    let forced: Option<OutFormat> = a.format.as_deref().map(|f| f.parse::<OutFormat>()).transpose()?;
    let inputs: Vec<String> = a.inputs.iter().chain(&a.input_opts).cloned().collect();
    let jobs = batch::plan(&inputs, &a.output, forced)?;
    for j in &jobs {
        let mut eo = EncodeOptions::new(j.format);
        eo.quality = a.quality;
        eo.check(1, 1, 3, 8)?;
    }
    let limits = DecodeLimits { max_pixels: a.max_pixels.unwrap_or(DecodeLimits::default().max_pixels) };
    let mut progress = Progress::new(a.json, a.quiet, jobs.len());
    progress.set_verb("downscaled");
    let (mut done, mut skipped, mut failed) = (0, 0, 0);
    let mut first_error: Option<Error> = None;
    for job in &jobs {
        let (src, dst) = (job.source.display(), job.sink.display());
        if let Sink::File(p) = &job.sink {
            if p.exists() && !a.overwrite {
                skipped += 1;
                progress.file(&src, &dst, "skipped", 0.0, None);
                continue;
            }
        }
        let t0 = Instant::now();
        match process(job, &limits, a.quality, a.scale, kernel) {
            Ok(()) => {
                done += 1;
                progress.file(&src, &dst, "done", t0.elapsed().as_secs_f64(), None);
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                failed += 1;
                progress.file(&src, &dst, "failed", t0.elapsed().as_secs_f64(), Some(&e.to_string()));
                if jobs.len() == 1 {
                    return Err(e);
                }
                report(&e);
                first_error.get_or_insert(e);
            }
        }
    }
    progress.summary(done, skipped, failed);
    if failed > 0 {
        eprintln!("error: {failed} of {} inputs failed", jobs.len());
        return Ok(ExitCode::from(first_error.map_or(1, |e| e.exit_code().clamp(1, 255) as u8)));
    }
    Ok(ExitCode::SUCCESS)
}

fn process(
    job: &Job,
    limits: &DecodeLimits,
    quality: Option<u8>,
    scale: usize,
    kernel: Kernel,
) -> Result<()> {
    let decoded = match &job.source {
        Source::File(p) => img::decode_file(p, limits)?,
        Source::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin().lock().read_to_end(&mut bytes).map_err(|e| Error::io("<stdin>", e))?;
            img::decode_bytes(&bytes, std::path::Path::new("<stdin>"), limits)?
        }
    };
    let name = job.source.display();
    let cropped =
        imresize::modcrop(&decoded.view(), scale).map_err(|e| Error::input(&name, e.to_string()))?;
    let out = match kernel {
        Kernel::Bicubic => imresize::imresize(&cropped.view(), 1.0 / scale as f64)?,
        Kernel::Bd => degrade::bd_downscale(&cropped.view(), scale)?,
    };
    let mut eo = EncodeOptions::new(job.format);
    eo.quality = quality;
    eo.icc = decoded.icc.clone();
    eo.check(out.width, out.height, out.channels, decoded.bit_depth())?;
    match &job.sink {
        Sink::File(p) => {
            if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            img::write_image_atomic(p, &out.view(), &eo)
        }
        Sink::Stdout => {
            let mut buf = Vec::new();
            img::encode_to_writer(&mut buf, &out.view(), &eo)?;
            let mut so = std::io::stdout().lock();
            so.write_all(&buf).and_then(|_| so.flush()).map_err(|e| Error::io("<stdout>", e))
        }
    }
}
