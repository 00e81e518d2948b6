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
