//! superres: a pure-Rust, CPU-only engine for image and video super-resolution networks.
//!
//! Models are static graphs of hand-tuned SIMD kernels (AVX-512, AVX2+FMA, NEON/portable, chosen at
//! run time) executed over memory-mapped weights.
//!
//! ```
//! use std::path::Path;
//! use superres::io::image::{ImageView, SamplesRef};
//! use superres::models::Model;
//! use superres::pipeline::{UpscaleOptions, Upscaler};
//! use superres::CpuLevel;
//!
//! # fn main() -> superres::Result<()> {
//! // Open a model (only its header is read) and prepare it for this CPU.
//! let model = Model::open(Path::new("weights/realesr-animevideov3.safetensors"))?;
//! let net = model.build(CpuLevel::effective(), None)?;
//! let mut up = Upscaler::new(net, UpscaleOptions::default());
//!
//! // A 4x3 RGB image, 8 bits per sample.
//! let pixels: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
//! let img = ImageView { width: 4, height: 3, channels: 3, samples: SamplesRef::U8(&pixels) };
//! let out = up.upscale(&img)?;
//! assert_eq!((out.width, out.height, out.channels), (16, 12, 3));
//! # Ok(())
//! # }
//! ```

pub mod convert;
pub mod cpu;
pub mod error;
pub mod graph;
pub mod io;
pub mod kernels;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod tensor;
pub mod weights;

pub use convert::{convert, ConvertReport};
pub use cpu::CpuLevel;
pub use error::{Error, Result};
