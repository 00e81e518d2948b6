//! superres: a pure-Rust, CPU-only engine for image and video super-resolution networks.

pub mod cpu;
pub mod kernels;
pub mod tensor;

pub use cpu::CpuLevel;
