//! `superres`: the command-line front end. Argument parsing, progress and exit codes live here;
//! everything else is the library.

mod bench;
mod downscale;
mod eval;
mod info;
mod progress;
mod upscale;
mod video;

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use superres::{CpuLevel, Error};

#[derive(Parser)]
#[command(name = "superres", version, about = "Image and video super-resolution on the CPU", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upscale images (files, directories, or - for stdin/stdout).
    Upscale(upscale::UpscaleArgs),
    /// Upscale video: Y4M (file or pipe) or a directory of frames, with window models (EDVR,
    /// TDAN) or any image model frame by frame.
    Video(video::VideoArgs),
    /// Time a model on a synthetic input (whole image, no tiling), as the anchor tools are timed.
    Bench(bench::BenchArgs),
    /// Convert a checkpoint (.pth or safetensors) into a superres model file.
    Convert(info::ConvertArgs),
    /// Describe a model: architecture, scale, parameters, receptive field, memory.
    Info(info::InfoArgs),
    /// List the models shipped in the weights folder.
    Models(info::ModelsArgs),
    /// PSNR/SSIM of a model, bicubic or saved SR images against ground truth, as the papers compute them.
    #[command(long_about = eval::LONG_ABOUT)]
    Eval(eval::EvalArgs),
    /// Make benchmark LR images: MATLAB-exact bicubic or the x4 BD blur-downsample.
    #[command(long_about = downscale::LONG_ABOUT)]
    Downscale(downscale::DownscaleArgs),
}

/// Options shared by every command that loads a model.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model: a shipped model name (see `superres models`) or a file (.safetensors, .pth, ncnn
    /// .param). Repeat to chain models (`-m denoise -m upscale`).
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: Vec<String>,
    /// Noise-reduction level of a model family with variants (waifu2x: 0-3, -1 for none).
    #[arg(short = 'n', long, value_name = "N", allow_hyphen_values = true)]
    pub noise: Option<i32>,
    /// Force the architecture instead of detecting it from the weights.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Override a hyper-parameter the checkpoint does not store (e.g. res_scale=0.1).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub params: Vec<(String, String)>,
    /// Scale to run, for multi-scale models.
    #[arg(short = 's', long, value_name = "N")]
    pub scale: Option<usize>,
    /// How 3x3 and 5x5 "same" convolutions run: auto (Winograd F(4x4) or F(6x6), and F(4x4, 5x5),
    /// where it is faster; results differ from direct summation by fp32 rounding, about 1e-6) or
    /// direct (every output summed in one fixed order, so any tiling gives byte-identical output)
    /// or winograd (on every such layer, for measurements). Default: $SUPERRES_CONV, else auto.
    #[arg(long = "conv", value_name = "ALGO",
          value_parser = clap::builder::PossibleValuesParser::new(["auto", "direct", "winograd"]))]
    pub conv: Option<String>,
    /// Arithmetic of the convolutions: fp32, or bf16 (operands rounded to bfloat16, sums in
    /// fp32) on the AMX tile unit of CPUs with AMX-BF16 (Intel Xeon 4th generation and later):
    /// output within 53-58 dB PSNR of fp32 on Set5 with Real-ESRGAN; as fast as fp32 to 20%
    /// faster (wider layers, video alignment, more threads). Layers without a bf16 kernel, and
    /// every layer on CPUs without AMX, run in fp32 (a note says so). Only with --conv auto.
    #[arg(long, value_name = "P", default_value = "fp32",
          value_parser = clap::builder::PossibleValuesParser::new(["fp32", "bf16"]))]
    pub precision: String,
    /// Most tensors a model file may declare (a guard against hostile checkpoints).
    #[arg(long, value_name = "N", default_value_t = superres::weights::WeightLimits::default().max_tensors)]
    pub max_tensors: usize,
    /// Largest tensor a model file may declare, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = superres::weights::WeightLimits::default().max_tensor_bytes >> 20)]
    pub max_tensor_mib: u64,
}

/// Self-ensemble options shared by `upscale` and `eval`.
#[derive(Args, Clone, Debug)]
pub struct TtaArgs {
    /// Self-ensemble (EDSR+): run the model on the flips and transposes of the input, undo each
    /// on the output and average. Usually a small PSNR gain; costs x8 the time (x4 with
    /// --tta-transforms 4); memory stays that of one tile.
    #[arg(long)]
    pub tta: bool,
    /// Transforms in the self-ensemble: 8 (flips and transposes) or 4 (flips only, as TDAN's
    /// evaluation).
    #[arg(long, value_name = "N", default_value = "8", requires = "tta",
          value_parser = clap::builder::PossibleValuesParser::new(["4", "8"]))]
    pub tta_transforms: String,
}

impl TtaArgs {
    pub fn ensemble(&self) -> superres::Result<superres::pipeline::Ensemble> {
        if !self.tta {
            return Ok(superres::pipeline::Ensemble::none());
        }
        superres::pipeline::Ensemble::with_count(self.tta_transforms.parse().expect("validated by clap"))
    }
}

/// Splitting a batch over machines (`upscale` and `video`).
#[derive(Args, Clone, Debug)]
pub struct ShardArgs {
    /// Process only shard i of n (0 <= i < n, as Kubernetes' JOB_COMPLETION_INDEX): a contiguous
    /// share of the inputs in path order, or of a video's frames. The n shards' outputs together
    /// are exactly the single-machine run's.
    #[arg(long, value_name = "i/n", conflicts_with = "shard_from_env")]
    pub shard: Option<String>,
    /// Take the shard from the scheduler: the index from SUPERRES_SHARD_INDEX,
    /// JOB_COMPLETION_INDEX (Kubernetes) or SLURM_ARRAY_TASK_ID (less SLURM_ARRAY_TASK_MIN), the
    /// count from SUPERRES_SHARD_COUNT or SLURM_ARRAY_TASK_COUNT.
    #[arg(long)]
    pub shard_from_env: bool,
}

impl ShardArgs {
    pub fn get(&self) -> superres::Result<superres::pipeline::shard::Shard> {
        use superres::pipeline::shard::Shard;
        match (&self.shard, self.shard_from_env) {
            (Some(s), _) => Shard::parse(s),
            (None, true) => Shard::from_env(),
            (None, false) => Ok(Shard::ALL),
        }
    }
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got '{s}'"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

impl ModelArgs {
    /// The one model named (commands that take a single model).
    pub fn open(&self) -> superres::Result<superres::models::Model> {
        if self.model.len() > 1 {
            return Err(superres::Error::Usage(
                "this command takes one model (-m given more than once)".into(),
            ));
        }
        Ok(self.open_all()?.remove(0))
    }

    /// Every model named, in order (the default model if none). `--noise` picks the variant of each
    /// model that is a family with noise levels; it is an error if none is.
    pub fn open_all(&self) -> superres::Result<Vec<superres::models::Model>> {
        use superres::models::registry;
        let names: Vec<&str> = if self.model.is_empty() {
            vec![registry::DEFAULT_MODEL]
        } else {
            self.model.iter().map(|s| s.as_str()).collect()
        };
        let opts = superres::models::OpenOptions {
            arch: self.arch.clone(),
            params: self.params.clone(),
            limits: superres::weights::WeightLimits {
                max_tensors: self.max_tensors,
                max_tensor_bytes: self.max_tensor_mib.saturating_mul(1 << 20),
            },
        };
        let has_levels: Vec<bool> = names.iter().map(|n| !registry::noise_levels(n).is_empty()).collect();
        if self.noise.is_some_and(|n| n != -1) && !has_levels.iter().any(|&h| h) {
            // Let the registry explain what has noise levels.
            registry::resolve_variant(names[0], self.noise)?;
        }
        names
            .iter()
            .zip(has_levels)
            .map(|(name, levels)| {
                let path = registry::resolve_variant(name, if levels { self.noise } else { None })?;
                let mut model = superres::models::Model::open_with(&path, &opts)?;
                model.set_conv_algo(self.conv_algo()?);
                Ok(model)
            })
            .collect()
    }

    /// `--conv`, else `SUPERRES_CONV`, else auto; `--precision bf16` turns auto into bf16.
    pub fn conv_algo(&self) -> superres::Result<superres::models::ConvAlgo> {
        use superres::models::ConvAlgo;
        let parsed = match &self.conv {
            Some(c) => c.parse(),
            None => ConvAlgo::from_env().map_err(|e| format!("SUPERRES_CONV: {e}")),
        };
        let algo = parsed.map_err(superres::Error::Usage)?;
        if self.precision != "bf16" {
            return Ok(algo);
        }
        if algo != ConvAlgo::Auto {
            return Err(superres::Error::Usage(format!(
                "--precision bf16 chooses its own kernels: it needs --conv auto, not {algo}"
            )));
        }
        static NOTE: std::sync::Once = std::sync::Once::new();
        let level = cpu_level();
        if !superres::kernels::bf16::amx_available(level) {
            NOTE.call_once(|| {
                eprintln!(
                    "note: --precision bf16 needs AMX-BF16 at the avx512 level (this CPU: {}); running fp32",
                    if superres::kernels::bf16::amx_available(CpuLevel::detect()) {
                        "lowered by SUPERRES_CPU"
                    } else if avx512_bf16() {
                        // Measured on Zen 4: vdpbf16ps direct sums ran at 0.55-0.6x the speed of
                        // our fp32 Winograd layers (README, bf16 section), so they are not offered.
                        "no AMX; its AVX512-BF16 direct sums are slower than fp32 Winograd"
                    } else {
                        "no AMX-BF16"
                    }
                )
            });
        }
        Ok(ConvAlgo::Bf16)
    }
}

/// Whether the CPU has AVX512-BF16 (for the note of `--precision bf16`).
fn avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `--two-stage auto|off|stream|N`.
pub fn parse_staging(s: &str) -> std::result::Result<superres::pipeline::Staging, String> {
    use superres::pipeline::Staging;
    match s {
        "auto" => Ok(Staging::Auto),
        "off" => Ok(Staging::Off),
        "stream" => Ok(Staging::Stream),
        n => match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Staging::TailTile(n)),
            _ => Err(format!("expected auto, off, stream or a tail tile edge in pixels, not {n:?}")),
        },
    }
}

/// The memory options of a run from its `--max-mem` (MiB): a given value is held (no growth);
/// without one, the machine's automatic budget ([`memory::auto_budget`]), at least `floor_mib`,
/// which an image may outgrow up to a quarter of the machine ([`memory::growth_limit`]) where
/// exact tiles would recompute too much.
pub fn memory_options(mib: Option<usize>, floor_mib: usize) -> MemoryOptions {
    use superres::pipeline::memory;
    match mib {
        Some(m) => MemoryOptions {
            max_working_bytes: m.saturating_mul(1 << 20),
            grow_budget: false,
            max_grown_bytes: 0,
        },
        None => {
            let limit = memory::machine_limit();
            MemoryOptions {
                max_working_bytes: memory::auto_budget(limit).max(floor_mib << 20),
                grow_budget: true,
                max_grown_bytes: memory::growth_limit(limit),
            }
        }
    }
}

/// The memory fields of an `UpscaleOptions` (see [`memory_options`]).
pub struct MemoryOptions {
    pub max_working_bytes: usize,
    pub grow_budget: bool,
    pub max_grown_bytes: usize,
}

/// The CPU level, lowered by `SUPERRES_CPU`; a bad value is reported, not fatal.
pub fn cpu_level() -> CpuLevel {
    if let Some(Err(e)) = CpuLevel::env_override() {
        eprintln!("warning: SUPERRES_CPU: {e}; using {}", CpuLevel::detect());
    }
    CpuLevel::effective()
}

/// Print an error with its chain of causes.
pub fn report(e: &Error) {
    eprintln!("error: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        eprintln!("  caused by: {s}");
        src = s.source();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ctrl-C: delete in-flight temporary files and leave at once (a long convolution would
    // otherwise delay the exit); finished outputs are complete files, never partial ones.
    let _ = ctrlc::set_handler(|| {
        superres::pipeline::cancel::cancel();
        superres::io::atomic::remove_all_temps();
        eprintln!("\ninterrupted");
        std::process::exit(130);
    });
    let result = match cli.command {
        Command::Upscale(a) => upscale::run(a),
        Command::Video(a) => video::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Convert(a) => info::convert(a),
        Command::Info(a) => info::info(a),
        Command::Models(a) => info::models(a),
        Command::Eval(a) => eval::run(a),
        Command::Downscale(a) => downscale::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code().clamp(1, 255) as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
