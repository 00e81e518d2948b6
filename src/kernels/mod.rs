//! Compute kernels. Each op family has a plain scalar reference next to its SIMD paths; the SIMD
//! paths are generic over [`simd::Simd`] and instantiated per CPU level.

pub mod attention;
pub mod bf16;
pub mod conv;
pub mod deconv;
pub mod deform;
pub mod degrade;
pub mod elementwise;
pub mod gemm;
pub mod imresize;
pub mod peak;
pub mod pool;
pub mod resize;
pub mod sample;
pub mod se;
pub mod shuffle;
pub mod sigmoid;
pub mod simd;
#[cfg(test)]
pub(crate) mod testutil;
pub mod thin;
pub mod winograd;
