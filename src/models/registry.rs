//! Models shipped in the project's `weights/` folder, found by name.
//!
//! Search order for the folder: `$SUPERRES_WEIGHTS`, `weights/` next to the executable, then
//! `../share/superres/weights` relative to the executable (an installed layout), then the source
//! checkout the binary was built from (so `cargo run` works in a fresh clone).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The model `upscale` uses when `-m` is not given.
pub const DEFAULT_MODEL: &str = "realesr-animevideov3";

/// Extension of our model files.
pub const EXTENSION: &str = "safetensors";

/// Candidate weight folders, in search order, that exist.
pub fn weights_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("SUPERRES_WEIGHTS") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(bin) = exe.parent() {
            dirs.push(bin.join("weights"));
            dirs.push(bin.join("../share/superres/weights"));
        }
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("weights"));
    dirs.retain(|d| d.is_dir());
    dirs.dedup();
    dirs
}

/// A model file found in a weights folder.
#[derive(Clone, Debug)]
pub struct Shipped {
    pub name: String,
    pub path: PathBuf,
}

/// Every model in the weights folders (first folder wins for duplicate names), sorted by name.
pub fn shipped() -> Vec<Shipped> {
    let mut out: Vec<Shipped> = Vec::new();
    for dir in weights_dirs() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for p in files {
            if p.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            let Some(name) = p.file_stem().and_then(|s| s.to_str()) else { continue };
            if !out.iter().any(|s| s.name == name) {
                out.push(Shipped { name: name.to_string(), path: p });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Noise-reduction levels shipped for a model family: `{name}-noise{N}` files (waifu2x ships one
/// model per level).
pub fn noise_levels(name: &str) -> Vec<u8> {
    let prefix = format!("{name}-noise");
    let mut v: Vec<u8> =
        shipped().iter().filter_map(|s| s.name.strip_prefix(&prefix).and_then(|n| n.parse().ok())).collect();
    v.sort_unstable();
    v
}

/// Resolve `-m NAME --noise N`: the family's `NAME-noiseN` variant; `-1` (no noise reduction) is
/// `NAME` itself; without `--noise`, as [`resolve`].
pub fn resolve_variant(name_or_path: &str, noise: Option<i32>) -> Result<PathBuf> {
    let Some(n) = noise else { return resolve(name_or_path) };
    if n == -1 {
        return resolve(name_or_path);
    }
    let levels = noise_levels(name_or_path);
    if levels.is_empty() {
        return Err(Error::Usage(format!(
            "--noise {n}: '{name_or_path}' has no noise-reduction variants (model families with them: {})",
            families().join(", ")
        )));
    }
    match u8::try_from(n).ok().filter(|l| levels.contains(l)) {
        Some(l) => resolve(&format!("{name_or_path}-noise{l}")),
        None => Err(Error::Usage(format!(
            "--noise {n}: '{name_or_path}' has noise levels {} (and -1 for none)",
            levels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Shipped models that have `-noiseN` variants.
pub fn families() -> Vec<String> {
    let list = shipped();
    list.iter().filter(|s| !noise_levels(&s.name).is_empty()).map(|s| s.name.clone()).collect()
}

/// Resolve `-m` : an existing path, or the name of a shipped model.
pub fn resolve(name_or_path: &str) -> Result<PathBuf> {
    let p = Path::new(name_or_path);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let list = shipped();
    if let Some(s) = list.iter().find(|s| s.name == name_or_path) {
        return Ok(s.path.clone());
    }
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    Err(Error::Usage(format!(
        "model '{name_or_path}' is neither a file nor a shipped model (shipped: {}; see `superres models`)",
        if names.is_empty() { "none found".to_string() } else { names.join(", ") }
    )))
}
