//! `superres eval`: PSNR/SSIM of a model (or bicubic, or saved SR images) against ground truth,
//! computed as the papers compute them.

use crate::{cpu_level, ModelArgs, TtaArgs};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use superres::io::image::DecodeLimits;
use superres::metrics::eval::{evaluate, EvalOptions, ImageScore, Kind, Method, Report};
use superres::metrics::{Channels, Score};
use superres::pipeline::{UpscaleOptions, Upscaler};
use superres::{Error, Result};

/// The pseudo-model name for MATLAB-exact bicubic upscaling.
pub const BICUBIC: &str = "bicubic";

/// The `--help` text.
pub const LONG_ABOUT: &str = "PSNR and SSIM exactly as the super-resolution papers compute them.\n\n\
    Images are paired by name (without extension) between --lr (or --sr) and --hr. The HR image \
    is cropped to a multiple of the scale (modcrop); LR x scale (or SR) must match it. Scores are \
    on Y of BT.601 (MATLAB rgb2ycbcr, unrounded; gray images as they are) after ignoring --crop \
    border pixels (default: the scale), in f64; SSIM is Wang et al.'s (11x11 Gaussian, sigma 1.5, \
    valid filtering). --rgb scores PSNR over R, G, B jointly and SSIM per channel, averaged.\n\n\
    A folder of images is averaged over images; a folder of clips (each a folder of frames) over \
    the frames of each clip, then over clips, as the video papers do (they use --crop 0).\n\n\
    -s N is the scale: a model's own by default (or which scale of a multi-scale model), inferred \
    from the image sizes for -m bicubic, required with --sr.\n\n\
    -m MODEL runs the model on the LR images and scores its 8-bit output (16-bit for 16-bit \
    input), as the papers score saved PNGs; -m bicubic is MATLAB imresize(lr, scale, 'bicubic'). \
    Nothing is written. An identical pair has infinite PSNR (null in --json).";

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Folder of LR inputs (a model or `-m bicubic` upscales them).
    #[arg(long, value_name = "DIR", conflicts_with = "sr", required_unless_present = "sr")]
    pub lr: Option<PathBuf>,
    /// Folder of SR images to score as they are (no model).
    #[arg(long, value_name = "DIR")]
    pub sr: Option<PathBuf>,
    /// Folder of ground-truth images (or of clips, each a folder of frames).
    #[arg(long, value_name = "DIR")]
    pub hr: PathBuf,
    /// Border pixels ignored on every side (default: the scale; the video papers use 0).
    #[arg(long, value_name = "N")]
    pub crop: Option<usize>,
    /// Score R, G and B instead of Y.
    #[arg(long)]
    pub rgb: bool,
    #[command(flatten)]
    pub tta: TtaArgs,
    /// Print one JSON object: {"mean": {"psnr", "ssim"}, "images": [{"name", "psnr", "ssim"}, ..]}
    /// (plus "clips" for a folder of clips).
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all available cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub threads: Option<usize>,
    /// Activation memory budget for automatic tiling, in MiB (default: `upscale`'s, at least
    /// 512, raised where `upscale` raises its default; a given value is held).
    #[arg(long, value_name = "MIB")]
    pub max_mem: Option<usize>,
    /// Largest input image accepted, in pixels.
    #[arg(long, value_name = "N")]
    pub max_pixels: Option<u64>,
}

fn num(v: f64) -> serde_json::Value {
    // JSON has no infinity: an identical pair's PSNR is null.
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

fn score_json(s: &Score) -> serde_json::Value {
    serde_json::json!({"psnr": num(s.psnr), "ssim": num(s.ssim)})
}

/// The `--json` object, keys in the documented order: `mean`, `images`, then `clips` for a
/// folder of clips.
fn report_json(r: &Report) -> String {
    let images: Vec<_> = r
        .images
        .iter()
        .map(|i| serde_json::json!({"name": i.name, "psnr": num(i.score.psnr), "ssim": num(i.score.ssim)}))
        .collect();
    let mut s = format!("{{\"mean\":{},\"images\":{}", score_json(&r.mean), serde_json::Value::Array(images));
    if r.kind == Kind::Clips {
        let clips: Vec<_> = r
            .clips
            .iter()
            .map(|c| {
                serde_json::json!({"name": c.name, "frames": c.frames, "psnr": num(c.score.psnr), "ssim": num(c.score.ssim)})
            })
            .collect();
        s.push_str(&format!(",\"clips\":{}", serde_json::Value::Array(clips)));
    }
    s.push('}');
    s
}

pub fn run(a: EvalArgs) -> Result<ExitCode> {
    if let Some(n) = a.threads {
        if n == 0 {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Usage(format!("cannot start {n} threads: {e}")))?;
    }
    let tta = a.tta.ensemble()?;
    if a.model.model.len() > 1 {
        return Err(Error::Usage("eval takes one model (-m given more than once)".into()));
    }
    let name = a.model.model.first().cloned();
    let (input, mut up, bicubic) = match (&a.lr, &a.sr) {
        (Some(lr), None) => {
            let Some(name) = name else {
                return Err(Error::Usage(format!("--lr needs a model: -m MODEL or -m {BICUBIC}")));
            };
            if name == BICUBIC {
                if !tta.is_plain() {
                    return Err(Error::Usage("--tta needs a model; bicubic has nothing to ensemble".into()));
                }
                if a.model.arch.is_some() || !a.model.params.is_empty() {
                    return Err(Error::Usage("--arch and --param apply to models, not bicubic".into()));
                }
                (lr.clone(), None, true)
            } else {
                let model = a.model.open()?;
                let net = model.build(cpu_level(), a.model.scale)?;
                let mem = crate::memory_options(a.max_mem, 512);
                let opts = UpscaleOptions {
                    max_working_bytes: mem.max_working_bytes,
                    grow_budget: mem.grow_budget,
                    max_grown_bytes: mem.max_grown_bytes,
                    tta: tta.clone(),
                    ..UpscaleOptions::default()
                };
                (lr.clone(), Some(Upscaler::new(net, opts)), false)
            }
        }
        (None, Some(sr)) => {
            if name.is_some() {
                return Err(Error::Usage("--sr scores saved images; -m applies to --lr".into()));
            }
            if !tta.is_plain() {
                return Err(Error::Usage("--tta applies when a model runs (-m MODEL --lr DIR)".into()));
            }
            (sr.clone(), None, false)
        }
        _ => return Err(Error::Usage("give either --lr DIR (with -m) or --sr DIR".into())),
    };
    let method = match (&mut up, bicubic) {
        (Some(u), _) => Method::Model(u),
        (None, true) => Method::Bicubic,
        (None, false) => Method::Files,
    };
    let opts = EvalOptions {
        scale: a.model.scale,
        crop: a.crop,
        channels: if a.rgb { Channels::Rgb } else { Channels::Y },
        limits: DecodeLimits { max_pixels: a.max_pixels.unwrap_or(DecodeLimits::default().max_pixels) },
    };
    let json = a.json;
    let mut out = std::io::stdout().lock();
    let mut header = false;
    let mut row = |i: &ImageScore| {
        if json {
            return;
        }
        if !header {
            let _ = writeln!(out, "{:<32} {:>10} {:>8}", "image", "PSNR", "SSIM");
            header = true;
        }
        let _ = writeln!(out, "{:<32} {:>10.4} {:>8.4}", i.name, i.score.psnr, i.score.ssim);
    };
    let report = evaluate(&input, &a.hr, method, &opts, &mut row)?;
    let mut out = std::io::stdout().lock();
    let ch = if a.rgb { "RGB" } else { "Y" };
    if json {
        let _ = writeln!(out, "{}", report_json(&report));
    } else {
        if report.kind == Kind::Clips {
            let _ = writeln!(out, "{:<32} {:>10} {:>8}", "clip", "PSNR", "SSIM");
            for c in &report.clips {
                let label = format!("{} ({} frames)", c.name, c.frames);
                let _ = writeln!(out, "{label:<32} {:>10.4} {:>8.4}", c.score.psnr, c.score.ssim);
            }
        }
        let n = if report.kind == Kind::Clips { report.clips.len() } else { report.images.len() };
        let what = if report.kind == Kind::Clips { "clips" } else { "images" };
        let label = format!("mean of {n} {what}");
        let _ = writeln!(out, "{label:<32} {:>10.4} {:>8.4}", report.mean.psnr, report.mean.ssim);
        let _ = writeln!(out, "(x{}, {ch}, border crop {})", report.scale, report.crop);
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}
