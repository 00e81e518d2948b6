//! From images to networks and back: tiling with overlap, pixel conversion straight into and out of
//! the network's buffers, alpha handling, and directory batches.

pub mod batch;
pub mod cancel;
pub mod chain;
pub mod memory;
pub mod shard;
pub mod staged;
pub mod tile;
pub mod tta;
pub mod upscale;
pub mod video;

pub use chain::Chain;
pub use staged::StagedTiles;
pub use tta::{Dihedral, Ensemble};
pub use upscale::{AlphaMode, OutputImage, Schedule, Staging, UpscaleOptions, Upscaler};
