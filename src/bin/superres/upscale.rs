//! `superres upscale`.

use crate::progress::Progress;
use crate::{cpu_level, report, ModelArgs, TtaArgs};
use clap::Args;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Instant;
use superres::io::image::{self as img, DecodeLimits, EncodeOptions, OutFormat};
use superres::pipeline::batch::{self, Job, Sink, Source};
use superres::pipeline::{AlphaMode, Chain, OutputImage, UpscaleOptions, Upscaler};
use superres::{Error, Result};

#[derive(Args, Debug)]
pub struct UpscaleArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input images or directories (`-` reads one image from stdin).
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// More inputs (same as positional INPUT; for ncnn-vulkan style scripts).
    #[arg(short = 'i', long = "input", value_name = "INPUT")]
    pub input_opts: Vec<String>,
    /// Output file, or directory for several inputs (`-` writes to stdout).
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    pub output: String,
    /// Tile edge in input pixels; 0 chooses automatically from --max-mem (whole image if it fits).
    #[arg(short = 't', long, default_value_t = 0, value_name = "N")]
    pub tile: usize,
    /// Context pixels around each tile (default: the model's receptive field, so tiling is exact).
    #[arg(long, value_name = "P")]
    pub tile_pad: Option<usize>,
    /// How images larger than --max-mem are cut (exact in every case): `auto` picks what
    /// recomputes least: whole-network tiles, two stages for models with an upscaling tail (big
    /// body tiles, small tail tiles), or the network streamed down vertical stripes a band of
    /// rows at a time (every row computed once; the stripes are --tile wide when it is set);
    /// `off`: whole-network tiles only; `stream`: streamed wherever the network allows;
    /// a number N: two stages with N-pixel tail tiles.
    #[arg(long, default_value = "auto", value_name = "auto|off|stream|N", value_parser = crate::parse_staging)]
    pub two_stage: superres::pipeline::Staging,
    /// Activation memory budget for automatic tiling, in MiB. The default is a sixteenth of the
    /// machine's memory (the smaller of its RAM and its cgroup limit) rounded down to a power of
    /// two, from 96 (machines under 2 GiB: a 1080p x4 run in under 256 MiB) to 1024 (16 GiB
    /// and up; `superres info` shows it); it is raised, with a note, up to a quarter of the
    /// machine for an image whose exact tiles under it would cost more than twice the untiled
    /// compute (models with a very wide receptive field, such as RRDBNet, on large images). A
    /// given value is held, which also makes the tiles, and so the output, the same on every
    /// machine.
    #[arg(long, value_name = "MIB")]
    pub max_mem: Option<usize>,
    /// Output bits per sample (default: same as the input).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["8", "16"]))]
    pub depth: Option<String>,
    /// Output format (default: from the output's extension; in directory mode, the input's).
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// JPEG quality, 1-100 (default 95).
    #[arg(long, value_name = "Q")]
    pub quality: Option<u8>,
    /// How to upscale an alpha channel.
    #[arg(long, default_value = "bicubic", value_parser = clap::builder::PossibleValuesParser::new(["bicubic", "model"]))]
    pub alpha: String,
    /// Worker threads (default: all available cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub threads: Option<usize>,
    /// Redo outputs that already exist (by default they are skipped, so a rerun resumes).
    #[arg(long)]
    pub overwrite: bool,
    /// Stop at the first input that fails (by default a batch reports it and carries on).
    #[arg(long)]
    pub fail_fast: bool,
    #[command(flatten)]
    pub shard: crate::ShardArgs,
    /// Progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Largest input image accepted, in pixels.
    #[arg(long, value_name = "N")]
    pub max_pixels: Option<u64>,
    #[command(flatten)]
    pub tta: TtaArgs,
    /// Output scale other than the model's own (e.g. 2 with a x4 model): the model runs at its
    /// native scale, then the result is resampled with Lanczos-3 to floor(outscale x input size).
    #[arg(long, value_name = "X")]
    pub outscale: Option<f64>,
}

pub fn run(a: UpscaleArgs) -> Result<ExitCode> {
    if let Some(n) = a.threads {
        if n == 0 {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Usage(format!("cannot start {n} threads: {e}")))?;
    }
    let forced: Option<OutFormat> = a.format.as_deref().map(|f| f.parse::<OutFormat>()).transpose()?;
    let inputs: Vec<String> = a.inputs.iter().chain(&a.input_opts).cloned().collect();
    let shard = a.shard.get()?;
    let jobs = batch::plan(&inputs, &a.output, forced)?;
    if shard.count > 1 && jobs.iter().any(|j| j.source == Source::Stdin || j.sink == Sink::Stdout) {
        return Err(Error::Usage("--shard splits file and directory batches, not stdin or stdout".into()));
    }
    let jobs = shard.select(jobs);
    // A run killed without a chance to clean up (SIGKILL, a lost node) leaves its temporary
    // files; they belong to outputs of this shard, which this run now owns.
    superres::io::atomic::remove_stale_temps(jobs.iter().filter_map(|j| match &j.sink {
        Sink::File(p) => Some(p.as_path()),
        Sink::Stdout => None,
    }))?;
    let mem = crate::memory_options(a.max_mem, 0);
    let opts = UpscaleOptions {
        tile: a.tile,
        tile_pad: a.tile_pad,
        max_working_bytes: mem.max_working_bytes,
        grow_budget: mem.grow_budget,
        max_grown_bytes: mem.max_grown_bytes,
        alpha: if a.alpha == "model" { AlphaMode::Model } else { AlphaMode::Bicubic },
        depth: a.depth.as_deref().map(|d| d.parse().expect("validated by clap")),
        tta: a.tta.ensemble()?,
        staging: a.two_stage,
        stream_band: 0,
    };
    // Catch format/depth/quality combinations that can never work before any image is read.
    for j in &jobs {
        let mut eo = EncodeOptions::new(j.format);
        eo.quality = a.quality;
        eo.check(1, 1, 3, opts.depth.unwrap_or(8))?;
    }
    let level = cpu_level();
    let mut stages = Vec::new();
    for model in a.model.open_all()? {
        // --scale picks among a multi-scale model's scales; single-scale models ignore it when chained.
        let scale = a.model.scale.filter(|s| a.model.model.len() <= 1 || model.arch().scales().contains(s));
        stages.push(Upscaler::new(model.build(level, scale)?, opts.clone()));
    }
    let mut up = Chain::new(stages, a.outscale, opts.depth)?;
    let limits = DecodeLimits { max_pixels: a.max_pixels.unwrap_or(DecodeLimits::default().max_pixels) };

    let mut progress = Progress::new(a.json, a.quiet, jobs.len());
    let mut tally =
        Tally { single: jobs.len() == 1 && shard.count == 1, fail_fast: a.fail_fast, ..Tally::default() };
    // Encoding and writing run on a thread of their own, one image behind the network, so that a
    // batch's compression and file writes overlap the next image's compute instead of leaving a
    // core idle. At most one image waits to be written; outcomes are reported in job order.
    std::thread::scope(|scope| -> Result<()> {
        let (to_writer, writer_jobs) =
            std::sync::mpsc::sync_channel::<(usize, f64, OutputImage, EncodeOptions)>(0);
        let (writer_tx, written) = std::sync::mpsc::channel::<(usize, f64, Result<()>)>();
        let jobs = &jobs;
        scope.spawn(move || {
            for (i, secs, out, eo) in writer_jobs {
                let t = Instant::now();
                let r = write_output(&jobs[i], &out, &eo);
                if writer_tx.send((i, secs + t.elapsed().as_secs_f64(), r)).is_err() {
                    break;
                }
            }
        });
        let mut pending = false;
        let collect = |tally: &mut Tally, progress: &mut Progress, pending: &mut bool| -> Result<()> {
            if std::mem::take(pending) {
                let (i, secs, r) = written.recv().map_err(|_| writer_stopped())?;
                tally.settle(progress, &jobs[i], secs, r)?;
            }
            Ok(())
        };
        for (i, job) in jobs.iter().enumerate() {
            if let Sink::File(p) = &job.sink {
                if p.exists() && !a.overwrite {
                    collect(&mut tally, &mut progress, &mut pending)?;
                    tally.skipped += 1;
                    progress.file(&job.source.display(), &job.sink.display(), "skipped", 0.0, None);
                    continue;
                }
            }
            let t0 = Instant::now();
            let r = compute(&mut up, job, &limits, a.quality, &mut progress);
            let secs = t0.elapsed().as_secs_f64();
            collect(&mut tally, &mut progress, &mut pending)?;
            match r {
                Ok((out, eo)) => {
                    to_writer.send((i, secs, out, eo)).map_err(|_| writer_stopped())?;
                    pending = true;
                }
                Err(Error::Interrupted) => return Err(Error::Interrupted),
                Err(e) => tally.settle(&mut progress, job, secs, Err(e))?,
            }
        }
        collect(&mut tally, &mut progress, &mut pending)
    })
    .inspect_err(|_| {
        if tally.fail_fast && !tally.single && tally.failed > 0 {
            progress.summary(tally.done, tally.skipped, tally.failed);
            eprintln!("error: stopped at the first failure (--fail-fast)");
        }
    })?;
    progress.summary(tally.done, tally.skipped, tally.failed);
    if tally.failed > 0 {
        eprintln!("error: {} of {} inputs failed", tally.failed, jobs.len());
        return Ok(ExitCode::from(tally.first_error.map_or(1, |e| e.exit_code().clamp(1, 255) as u8)));
    }
    Ok(ExitCode::SUCCESS)
}

fn writer_stopped() -> Error {
    Error::io("<image writer>", std::io::Error::other("the writer thread stopped"))
}

/// Counts of a batch and how a finished job is reported.
#[derive(Default)]
struct Tally {
    done: usize,
    skipped: usize,
    failed: usize,
    first_error: Option<Error>,
    /// One input, not sharded: its error is the command's error.
    single: bool,
    fail_fast: bool,
}

impl Tally {
    /// Report job `job`'s outcome; an error that must end the run (the only input's, or any
    /// under `--fail-fast`) is returned.
    fn settle(&mut self, progress: &mut Progress, job: &Job, secs: f64, r: Result<()>) -> Result<()> {
        let (src, dst) = (job.source.display(), job.sink.display());
        match r {
            Ok(()) => {
                self.done += 1;
                progress.file(&src, &dst, "done", secs, None);
                Ok(())
            }
            Err(e) => {
                self.failed += 1;
                progress.file(&src, &dst, "failed", secs, Some(&e.to_string()));
                if self.single || self.fail_fast {
                    return Err(e);
                }
                report(&e);
                self.first_error.get_or_insert(e);
                Ok(())
            }
        }
    }
}

/// Decode `job`'s input and run the network: the output image and how to encode it.
fn compute(
    up: &mut Chain,
    job: &Job,
    limits: &DecodeLimits,
    quality: Option<u8>,
    progress: &mut Progress,
) -> Result<(OutputImage, EncodeOptions)> {
    let decoded = match &job.source {
        Source::File(p) => img::decode_file(p, limits)?,
        Source::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin().lock().read_to_end(&mut bytes).map_err(|e| Error::io("<stdin>", e))?;
            img::decode_bytes(&bytes, std::path::Path::new("<stdin>"), limits)?
        }
    };
    let mut eo = EncodeOptions::new(job.format);
    eo.quality = quality;
    eo.icc = decoded.icc.clone();
    // Refuse before spending the compute if this image cannot be written as asked.
    let depth = up.depth().unwrap_or(decoded.bit_depth());
    let (ow, oh) = up.output_size(decoded.width, decoded.height);
    eo.check(ow, oh, decoded.channels, depth)?;
    let name = job.source.display();
    note_grown_budget(up, &name, decoded.width, decoded.height);
    warn_recompute(up, &name, decoded.width, decoded.height);
    let start = Instant::now();
    let out = up.upscale_with_progress(&decoded.view(), &mut |d, t| progress.tiles(&name, d, t, start))?;
    Ok((out, eo))
}

/// Encode `out` and write it where `job` says (files atomically).
fn write_output(job: &Job, out: &OutputImage, eo: &EncodeOptions) -> Result<()> {
    match &job.sink {
        Sink::File(p) => {
            if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            img::write_image_atomic(p, &out.view(), eo)
        }
        Sink::Stdout => {
            let mut buf = Vec::new();
            img::encode_to_writer(&mut buf, &out.view(), eo)?;
            let mut so = std::io::stdout().lock();
            so.write_all(&buf).and_then(|_| so.flush()).map_err(|e| Error::io("<stdout>", e))
        }
    }
}

/// Say so (once per run) when an image runs under a larger budget than the default --max-mem
/// (see `UpscaleOptions::grow_budget`).
fn note_grown_budget(up: &Chain, name: &str, w: u32, h: u32) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static NOTED: AtomicBool = AtomicBool::new(false);
    if let Some((grown, base)) = up.grown_budget(w, h) {
        if !NOTED.swap(true, Ordering::Relaxed) {
            let f = up.recompute_factor_under(w, h, Some(base));
            eprintln!(
                "note: {name}: exact tiles under the default --max-mem {} cost {f:.0}x the untiled compute \
                 (the model's receptive field is wide); running under {} MiB instead (a given --max-mem is held)",
                base >> 20,
                grown >> 20
            );
        }
    }
}

/// Say so (once per run) when exact tiling under the memory budget recomputes a lot: a model
/// with a very wide receptive field (RRDBNet's is 349 pixels) on a large image.
fn warn_recompute(up: &Chain, name: &str, w: u32, h: u32) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    let f = up.recompute_factor(w, h);
    if f > 4.0 && !WARNED.swap(true, Ordering::Relaxed) {
        // The smallest budget (a power of two, up to 32 GiB) that brings it within 2x.
        let hint = (8..=15)
            .map(|p| 1usize << p)
            .find(|&mib| up.recompute_factor_under(w, h, Some(mib << 20)) <= 2.0)
            .map_or(String::new(), |mib| {
                let g = up.recompute_factor_under(w, h, Some(mib << 20));
                format!(" (--max-mem {mib} gives {g:.1}x)")
            });
        eprintln!(
            "warning: {name}: tiles that reproduce the untiled result exactly cost {f:.0}x the untiled \
             compute under this --max-mem (each needs the model's whole receptive field as context); \
             a larger --max-mem runs it faster{hint}, or --tile-pad P (approximate seams) cheaper"
        );
    }
}
