//! superres: a pure-Rust, CPU-only engine for image and video super-resolution networks.

pub mod cpu;
pub mod error;
pub mod io;
pub mod kernels;
pub mod tensor;
pub mod weights;

pub use cpu::CpuLevel;
pub use error::{Error, Result};
