//! `superres info`, `superres models` and `superres convert`.

use crate::{cpu_level, ModelArgs};
use clap::Args;
use std::process::ExitCode;
use superres::models::{registry, Model, ModelInfo, OpenOptions};
use superres::{Error, Result};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Model name or file (default: the default model); same as -m.
    #[arg(value_name = "MODEL", id = "model_pos")]
    pub model: Option<String>,
    #[command(flatten)]
    pub opts: ModelArgs,
    /// Input size for the memory and compute figures, WxH.
    #[arg(long, default_value = "320x180", value_name = "WxH")]
    pub size: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Checkpoint to convert (.pth/.pt, or a safetensors state dict).
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Output model file (.safetensors).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: String,
    /// Force the architecture instead of detecting it.
    #[arg(long)]
    pub arch: Option<String>,
    /// Override a hyper-parameter the checkpoint does not store (e.g. res_scale=0.1).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = crate::parse_kv)]
    pub params: Vec<(String, String)>,
}

pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (w, h) =
        s.split_once(['x', 'X']).ok_or_else(|| Error::Usage(format!("--size '{s}': expected WxH")))?;
    match (w.parse(), h.parse()) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(Error::Usage(format!("--size '{s}': expected WxH with positive integers"))),
    }
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn info_json(info: &ModelInfo, path: &str) -> serde_json::Value {
    serde_json::json!({
        "path": path,
        "arch": info.arch,
        "description": info.description,
        "layout": info.layout,
        "scales": info.scales,
        "parameters": info.parameters,
        "receptive_field": info.receptive_field.iter().map(|(s, r)| serde_json::json!({"scale": s, "radius": r})).collect::<Vec<_>>(),
        "hyper_parameters": info.hyper_parameters,
        "notes": info.notes,
    })
}

pub fn info(a: InfoArgs) -> Result<ExitCode> {
    let mut margs = a.opts.clone();
    if let Some(m) = &a.model {
        margs.model = vec![m.clone()];
    }
    let model = margs.open()?;
    let info = model.info();
    let (w, h) = parse_size(&a.size)?;
    let level = cpu_level();
    let mut mem = Vec::new();
    if model.arch().is_video() {
        let v = model.shape_video()?;
        let m = v.size_multiple();
        let (vw, vh) = (w.div_ceil(m) * m, h.div_ceil(m) * m);
        let (fp, wp) = v.plans(vh, vw)?;
        let per_frame: usize = v.frame_graph().outputs().iter().map(|&o| fp.layouts[o].len() * 4).sum();
        let feat_sizes: Vec<(usize, usize)> =
            v.frame_graph().outputs().iter().map(|&o| (fp.layouts[o].h, fp.layouts[o].w)).collect();
        let mut sizes: Vec<(usize, usize)> = Vec::new();
        for _ in 0..v.num_frames() {
            sizes.extend_from_slice(&feat_sizes);
        }
        sizes.push((vh, vw));
        mem.push(serde_json::json!({
            "scale": v.scale(),
            "input": [vw, vh],
            "frame_activation_bytes": fp.arena_bytes(),
            "window_activation_bytes": wp.arena_bytes(),
            "activation_bytes": fp.arena_bytes().max(wp.arena_bytes()),
            "largest_activation_bytes": fp.largest_value_bytes().max(wp.largest_value_bytes()),
            "feature_cache_bytes_per_frame": per_frame,
            "buffers": wp.slot_len.len(),
            "weight_bytes": model.info().parameters as usize * 4,
            "gmac_per_frame_features": v.frame_graph().macs(vh, vw) as f64 / 1e9,
            "gmac_per_window": v.window_graph().macs_with(&sizes) as f64 / 1e9,
            "gmac": (v.frame_graph().macs(vh, vw) + v.window_graph().macs_with(&sizes)) as f64 / 1e9,
        }));
    }
    for &s in &info.scales {
        if margs.scale.is_some_and(|want| want != s) || model.arch().is_video() {
            continue;
        }
        let g = model.shape_graph(Some(s))?;
        // The graph's input: the image rounded up to its alignment plus its pre-padding.
        let (ih, iw) = match g.geometry() {
            Some(geo) => (
                h.next_multiple_of(geo.align) + 2 * geo.margin,
                w.next_multiple_of(geo.align) + 2 * geo.margin,
            ),
            None => (h, w),
        };
        let plan = superres::graph::Plan::new(&g, ih, iw)
            .ok_or_else(|| Error::Usage(format!("{w}x{h} is too small for this model")))?;
        let weights: usize = model.info().parameters as usize * 4;
        mem.push(serde_json::json!({
            "scale": s,
            "input": [w, h],
            "activation_bytes": plan.arena_bytes(),
            "largest_activation_bytes": plan.largest_value_bytes(),
            "buffers": plan.slot_len.len(),
            "weight_bytes": weights,
            "gmac": g.macs(h, w) as f64 / 1e9,
        }));
    }
    let machine = superres::pipeline::memory::machine_limit();
    let budget = superres::pipeline::memory::auto_budget(machine);
    let path = model.path().display().to_string();
    if a.json {
        let mut v = info_json(&info, &path);
        v["memory"] = serde_json::Value::Array(mem);
        v["cpu_level"] = serde_json::Value::String(level.to_string());
        v["machine_memory_bytes"] = machine.map_or(serde_json::Value::Null, Into::into);
        v["default_max_mem_bytes"] = budget.into();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("model:            {path}");
    println!("architecture:     {}", info.description);
    if let Some(l) = &info.layout {
        println!("checkpoint layout: {l}");
    }
    println!(
        "scales:           {}",
        info.scales.iter().map(|s| format!("x{s}")).collect::<Vec<_>>().join(", ")
    );
    println!("parameters:       {}", info.parameters);
    for (s, r) in &info.receptive_field {
        match r {
            Some(r) => println!("receptive field:  x{s}: {r} px radius in input pixels (tiles overlap by this much)"),
            None => println!("receptive field:  x{s}: unbounded (deformable convolutions sample where their offsets point)"),
        }
    }
    for m in &mem {
        let act = m["activation_bytes"].as_u64().unwrap_or(0) as usize;
        let big = m["largest_activation_bytes"].as_u64().unwrap_or(1).max(1) as usize;
        println!(
            "memory (x{}, {w}x{h} input): activations {} in {} buffers = {:.1}x the largest activation ({}); weights {}",
            m["scale"],
            mib(act),
            m["buffers"],
            act as f64 / big as f64,
            mib(big),
            mib(m["weight_bytes"].as_u64().unwrap_or(0) as usize)
        );
        println!("compute (x{}, {w}x{h} input): {:.1} GMAC", m["scale"], m["gmac"].as_f64().unwrap_or(0.0));
        if let Some(c) = m.get("feature_cache_bytes_per_frame") {
            println!(
                "video: {} per cached frame; per output frame in a stream {:.1} GMAC (features {:.1} + window {:.1})",
                mib(c.as_u64().unwrap_or(0) as usize),
                m["gmac"].as_f64().unwrap_or(0.0),
                m["gmac_per_frame_features"].as_f64().unwrap_or(0.0),
                m["gmac_per_window"].as_f64().unwrap_or(0.0)
            );
        }
    }
    println!("cpu level:        {level}");
    match machine {
        Some(m) => println!(
            "memory budget:    {} by default (machine limit {:.1} GiB; --max-mem sets it)",
            mib(budget),
            m as f64 / (1u64 << 30) as f64
        ),
        None => println!(
            "memory budget:    {} by default (machine limit unknown; --max-mem sets it)",
            mib(budget)
        ),
    }
    for (k, v) in &info.hyper_parameters {
        println!("  {k} = {v}");
    }
    for n in &info.notes {
        println!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn models(a: ModelsArgs) -> Result<ExitCode> {
    let list = registry::shipped();
    let mut rows = Vec::new();
    for s in &list {
        let row = match Model::open(&s.path) {
            Ok(m) => {
                let i = m.info();
                serde_json::json!({
                    "name": s.name, "path": s.path.display().to_string(), "arch": i.arch,
                    "description": i.description, "scales": i.scales, "parameters": i.parameters,
                    "default": s.name == registry::DEFAULT_MODEL,
                    "noise_levels": registry::noise_levels(&s.name),
                })
            }
            Err(e) => {
                serde_json::json!({"name": s.name, "path": s.path.display().to_string(), "error": e.to_string()})
            }
        };
        rows.push(row);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no shipped models found (searched: {:?})", registry::weights_dirs());
    }
    for r in &rows {
        let star = if r["default"].as_bool() == Some(true) { " (default)" } else { "" };
        match r.get("error") {
            Some(e) => {
                println!("{:<28} error: {}", r["name"].as_str().unwrap_or(""), e.as_str().unwrap_or(""))
            }
            None => {
                let name = r["name"].as_str().unwrap_or("");
                let levels = registry::noise_levels(name);
                let noise = if levels.is_empty() {
                    String::new()
                } else {
                    format!(
                        " [--noise {}]",
                        levels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("/")
                    )
                };
                println!("{:<30} {}{star}{noise}", name, r["description"].as_str().unwrap_or(""))
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn convert(a: ConvertArgs) -> Result<ExitCode> {
    let src = std::path::Path::new(&a.src);
    let opts = OpenOptions { arch: a.arch.clone(), params: a.params.clone(), ..Default::default() };
    let report = superres::convert(src, std::path::Path::new(&a.output), &opts)?;
    println!("read:         {}", a.src);
    println!("architecture: {}", report.info.description);
    if let Some(l) = &report.info.layout {
        println!("layout:       {l}");
    }
    println!("parameters:   {}", report.info.parameters);
    for n in &report.info.notes {
        println!("note: {n}");
    }
    println!(
        "wrote:        {} ({} tensors, {} bytes), checked by running it",
        a.output, report.tensors, report.bytes
    );
    Ok(ExitCode::SUCCESS)
}
