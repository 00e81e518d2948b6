//! `superres bench`: time a model on a synthetic input, the way the anchor tools are timed
//! (whole input, no tiling), for side-by-side comparisons and for estimating a job's duration;
//! with `--tiled`, through the tiling pipeline of `upscale` (8-bit samples in and out), for
//! measuring how the time grows with the image.

use crate::{cpu_level, ModelArgs};
use clap::Args;
use std::process::ExitCode;
use std::time::Instant;
use superres::graph::{profile, Arena};
use superres::{Error, Result};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input size, WxH (video models: each frame).
    #[arg(long, default_value = "320x180", value_name = "WxH")]
    pub size: String,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Worker threads (default: all available cores).
    #[arg(short = 'j', long)]
    pub threads: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Image models: run as `upscale` does, tile by tile under `--max-mem` (or `--tile`), on an
    /// 8-bit RGB image, conversions included.
    #[arg(long)]
    pub tiled: bool,
    /// With --tiled: tile edge in input pixels (0: chosen from --max-mem).
    #[arg(short = 't', long, default_value_t = 0, value_name = "N", requires = "tiled")]
    pub tile: usize,
    /// With --tiled: activation memory budget for the automatic tile size, in MiB (default: as
    /// `upscale`'s, from the machine's memory, raised where `upscale` raises it; a given value
    /// is held).
    #[arg(long, value_name = "MIB", requires = "tiled")]
    pub max_mem: Option<usize>,
    /// With --tiled: how the image is cut, as `upscale --two-stage`.
    #[arg(long, default_value = "auto", value_name = "auto|off|stream|N", value_parser = crate::parse_staging, requires = "tiled")]
    pub two_stage: superres::pipeline::Staging,
    /// With --tiled, where the image is streamed: input rows per band (multiples of 12 keep
    /// Winograd tiles whole; 0: the tallest that fit --max-mem, up to 61440 pixels a band).
    #[arg(long, default_value_t = 0, value_name = "ROWS", requires = "tiled")]
    pub band: usize,
    /// Time every layer of the timed runs and print where the time goes (to stderr), per
    /// operation and shape, with GFLOP/s for the convolutions. The timer adds a little overhead.
    #[arg(long)]
    pub profile: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(reps: usize, warmup: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    profile::reset();
    (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    if let Some(n) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .map_err(|e| Error::Usage(format!("cannot start {n} threads: {e}")))?;
    }
    let (w, h) = crate::info::parse_size(&a.size)?;
    profile::set_enabled(a.profile);
    let model = a.model.open()?;
    let level = cpu_level();
    // A fixed pseudo-random input in [0,1].
    let frame: Vec<f32> = (0..h * w * 3).map(|i| ((i as u64 * 2654435761) % 1000) as f32 / 999.0).collect();
    let mut arena = Arena::new();
    let mut out = serde_json::json!({
        "model": model.path().display().to_string(),
        "arch": model.arch().to_string(),
        "input": [w, h],
        "threads": rayon::current_num_threads(),
        "cpu_level": level.to_string(),
        "precision": if model.conv_algo().bf16_active(level) { "bf16" } else { "fp32" },
    });
    if a.tiled && model.arch().is_video() {
        return Err(Error::Usage("--tiled times image models; video models run on whole frames".into()));
    }
    if model.arch().is_video() {
        let net = model.build_video(level)?;
        let t = net.num_frames();
        let single = time(a.reps, a.warmup, || {
            let feats = (0..t).map(|_| net.features(&frame, h, w, &mut arena)).collect::<Result<Vec<_>>>()?;
            net.window(&feats.iter().collect::<Vec<_>>(), &mut arena).map(|_| ())
        })?;
        print_profile(a.profile, "one window (all frames' features)", a.reps);
        let cached = (0..t).map(|_| net.features(&frame, h, w, &mut arena)).collect::<Result<Vec<_>>>()?;
        let stream = time(a.reps, a.warmup, || {
            let f = net.features(&frame, h, w, &mut arena)?;
            let win: Vec<_> = (0..t).map(|i| if i == t / 2 { &f } else { &cached[i] }).collect();
            net.window(&win, &mut arena).map(|_| ())
        })?;
        print_profile(a.profile, "streamed (one new frame per window)", a.reps);
        out["median_s"] = median(single.clone()).into();
        out["times_s"] = single.into();
        out["stream_per_frame_median_s"] = median(stream.clone()).into();
        out["stream_times_s"] = stream.into();
    } else if a.tiled {
        use superres::io::image::{ImageView, SamplesRef};
        use superres::pipeline::upscale::{UpscaleOptions, Upscaler};
        let net = model.build(level, a.model.scale)?;
        let gmac = net.graph().macs(h, w) as f64 / 1e9;
        let mem = crate::memory_options(a.max_mem, 0);
        let opts = UpscaleOptions {
            tile: a.tile,
            max_working_bytes: mem.max_working_bytes,
            grow_budget: mem.grow_budget,
            max_grown_bytes: mem.max_grown_bytes,
            staging: a.two_stage,
            stream_band: a.band,
            ..UpscaleOptions::default()
        };
        let mut up = Upscaler::new(net, opts);
        let (schedule, tiles) = (up.schedule(h, w), up.tiles_for(h, w));
        let work = (up.macs(h, w) as f64 / 1e9, up.working_bytes(h, w) as f64 / 1048576.0);
        let samples: Vec<u8> = frame.iter().map(|&v| (v * 255.0).round() as u8).collect();
        let img =
            ImageView { width: w as u32, height: h as u32, channels: 3, samples: SamplesRef::U8(&samples) };
        let times = time(a.reps, a.warmup, || up.upscale(&img).map(|_| ()))?;
        print_profile(a.profile, "one image, tiled", a.reps);
        let med = median(times.clone());
        out["schedule"] = format!("{schedule:?}").into();
        out["tiled_gmac"] = work.0.into();
        out["working_mib"] = work.1.into();
        out["tiles"] = tiles.into();
        out["gmac"] = gmac.into();
        out["gflops"] = (2.0 * gmac / med).into();
        out["us_per_input_pixel"] = (med * 1e6 / (w * h) as f64).into();
        out["median_s"] = med.into();
        out["times_s"] = times.into();
    } else {
        let net = model.build(level, a.model.scale)?;
        let times = time(a.reps, a.warmup, || net.run_hwc(&frame, h, w, &mut arena).map(|_| ()))?;
        print_profile(a.profile, "one image", a.reps);
        let gmac = net.graph().macs(h, w) as f64 / 1e9;
        let med = median(times.clone());
        out["gmac"] = gmac.into();
        out["gflops"] = (2.0 * gmac / med).into();
        out["median_s"] = med.into();
        out["times_s"] = times.into();
    }
    if a.json {
        println!("{out}");
    } else {
        println!("{}", out["arch"].as_str().unwrap_or(""));
        println!(
            "input {w}x{h}, {} threads, {} level, {}",
            out["threads"],
            level,
            out["precision"].as_str().unwrap_or("")
        );
        println!("median {:.3} s over {} runs", out["median_s"].as_f64().unwrap_or(0.0), a.reps);
        if let Some(g) = out.get("gflops") {
            println!(
                "{:.1} GMAC -> {:.1} GFLOP/s",
                out["gmac"].as_f64().unwrap_or(0.0),
                g.as_f64().unwrap_or(0.0)
            );
        }
        if let Some(t) = out.get("tiles") {
            println!(
                "tiled: {} tile(s), {}, {:.1} GMAC with the overlaps, {:.1} MiB working memory, {:.3} us per input pixel",
                t,
                out["schedule"].as_str().unwrap_or(""),
                out["tiled_gmac"].as_f64().unwrap_or(0.0),
                out["working_mib"].as_f64().unwrap_or(0.0),
                out["us_per_input_pixel"].as_f64().unwrap_or(0.0)
            );
        }
        if let Some(s) = out.get("stream_per_frame_median_s") {
            println!(
                "streamed, per output frame: {:.3} s (each frame's features computed once)",
                s.as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The per-layer table of `--profile`, per timed run.
fn print_profile(on: bool, what: &str, reps: usize) {
    if !on {
        return;
    }
    let rows = profile::rows();
    let total: f64 = rows.iter().map(|r| r.seconds).sum();
    let reps = reps.max(1) as f64;
    eprintln!("profile, {what}: {:.3} s per run in layers", total / reps);
    eprintln!("{:>8} {:>6} {:>6} {:>8}  layer", "s/run", "share", "calls", "GFLOP/s");
    for r in rows {
        let gflops =
            if r.macs > 0 { format!("{:.1}", 2.0 * r.macs as f64 / r.seconds / 1e9) } else { "-".into() };
        eprintln!(
            "{:>8.4} {:>5.1}% {:>6} {:>8}  {}",
            r.seconds / reps,
            100.0 * r.seconds / total,
            r.calls as f64 / reps,
            gflops,
            r.label
        );
    }
}
