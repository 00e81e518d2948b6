//! `superres convert`: read a checkpoint, detect its architecture, write our model file, and prove
//! the written file computes exactly what the checkpoint does.

use crate::error::{Error, Result};
use crate::graph::Arena;
use crate::models::{Model, ModelInfo, OpenOptions};
use crate::CpuLevel;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct ConvertReport {
    pub info: ModelInfo,
    pub tensors: usize,
    pub bytes: u64,
}

/// A fixed, non-trivial test pattern in [0,1].
fn pattern(h: usize, w: usize) -> Vec<f32> {
    (0..h * w * 3).map(|i| ((i * 7919) % 257) as f32 / 256.0).collect()
}

/// Convert `src` (a .pth checkpoint or a safetensors state dict) into our safetensors model at
/// `dst` (written atomically), then reopen it and check that every scale produces bit-identical,
/// finite output to the source on a test pattern.
pub fn convert(src: &Path, dst: &Path, opts: &OpenOptions) -> Result<ConvertReport> {
    if let (Ok(a), Ok(b)) = (src.canonicalize(), dst.canonicalize()) {
        if a == b {
            return Err(Error::Usage(format!("refusing to convert '{}' onto itself", src.display())));
        }
    }
    let model = Model::open_with(src, opts)?;
    let info = model.info();
    crate::io::atomic::write_atomic(dst, |w| model.write_safetensors(w))?;
    let written = Model::open(dst)?;
    let tensors = crate::weights::safetensors::SafeTensors::open(dst)?.header().tensors.len();
    let bytes = std::fs::metadata(dst).map_err(|e| Error::io(dst, e))?.len();
    let level = CpuLevel::effective();
    let (h, w) = (13, 11);
    let x = pattern(h, w);
    for s in model.arch().scales() {
        let a = model.build(level, Some(s))?.run_hwc(&x, h, w, &mut Arena::new())?;
        let b = written.build(level, Some(s))?.run_hwc(&x, h, w, &mut Arena::new())?;
        if a != b || b.iter().any(|v| !v.is_finite()) {
            let _ = std::fs::remove_file(dst);
            return Err(Error::format(
                dst,
                format!("conversion check failed at x{s}: the written model does not reproduce the source"),
            ));
        }
    }
    Ok(ConvertReport { info: written.info_with_notes(&info.notes), tensors, bytes })
}
