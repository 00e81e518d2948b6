//! PyTorch checkpoints (`.pth`, `.pt`), read without executing anything from the file.
//!
//! `torch.save` pickles the object and keeps tensor data outside the pickle, in "storages"
//! the pickle names by key. Two containers exist:
//!
//! * the zip archive written since PyTorch 1.6: `<prefix>/data.pkl` plus one stored entry
//!   `<prefix>/data/<key>` per storage, and `<prefix>/byteorder` (only `little` is
//!   supported) and `<prefix>/version`, which we do not need. The prefix is any folder name;
//! * the legacy stream of pickles followed by raw storages (see `legacy.rs`).
//!
//! The pickle is read by a restricted unpickler (`pickle.rs`) that interprets only the torch
//! tensor constructors and a handful of builtins; the state dict is then found in the result
//! (`select.rs`) and each tensor copied out of its storage into dense row-major bytes, keeping
//! its dtype. Every offset, size and stride is checked against the data it indexes.

mod legacy;
mod pickle;
mod select;
mod zip;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use self::pickle::{Pickle, TensorRef};
use super::{StateDict, TensorData, WeightLimits};
use crate::error::Error;

/// A checkpoint's weights, and the key of the top-level dict they were found under
/// (`params_ema`, `state_dict`, ...) when they were not the top-level object itself.
#[derive(Debug, Clone)]
pub struct PthFile {
    pub state: StateDict,
    pub source_key: Option<String>,
}

/// Bytes of materialised tensors allowed beyond twice the storage data they use: views can
/// legitimately read one storage several times (or broadcast it with stride 0), but a hostile
/// file must not turn a few bytes into terabytes.
const MATERIALISE_SLACK: usize = 64 << 20;

/// Does this look like a PyTorch checkpoint (a zip with a `data.pkl`, or the legacy magic)?
pub fn is_pth(bytes: &[u8]) -> bool {
    if zip::is_zip(bytes) {
        zip::Archive::parse(bytes).is_ok_and(|a| find_prefix(&a).is_some())
    } else {
        legacy::has_magic(bytes)
    }
}

/// Cheap sniff of a file's first bytes (64 are enough): a zip archive or the legacy pickle magic,
/// or the tar container of PyTorch < 0.4 (given at least 262 bytes). A zip that is not a PyTorch
/// checkpoint is still reported by [`read_pth`] with a clear error.
pub fn looks_like_pth(head: &[u8]) -> bool {
    zip::is_zip(head) || legacy::has_magic(head) || legacy::is_tar(head)
}

/// Why reading failed: a malformed file, or one that declares more than the limits allow.
enum Failure {
    Bad(String),
    Limit(Error),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Bad(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Failure::Bad(s.to_string())
    }
}

/// Read a checkpoint from disk.
pub fn read_pth(path: &Path) -> crate::Result<PthFile> {
    read_pth_with(path, &WeightLimits::default())
}

/// [`read_pth`], refusing a checkpoint whose state dict has more or larger tensors than `limits`
/// allow before any tensor is copied out.
pub fn read_pth_with(path: &Path, limits: &WeightLimits) -> crate::Result<PthFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_any(&bytes, path, limits).map_err(|f| match f {
        Failure::Bad(reason) => Error::format(path, reason),
        Failure::Limit(e) => e,
    })
}

/// Read a checkpoint held in memory: the zip or the legacy format, told apart by magic.
pub fn read_pth_bytes(bytes: &[u8]) -> Result<PthFile, String> {
    read_any(bytes, Path::new("<memory>"), &WeightLimits::default()).map_err(|f| match f {
        Failure::Bad(reason) => reason,
        Failure::Limit(e) => e.to_string(),
    })
}

fn read_any(bytes: &[u8], path: &Path, limits: &WeightLimits) -> Result<PthFile, Failure> {
    let ctx = Ctx { path, limits };
    if zip::is_zip(bytes) {
        read_zip(bytes, &ctx)
    } else if legacy::is_tar(bytes) {
        Err("the tar-based PyTorch format (before 0.4) is not supported; re-save the checkpoint with a newer torch"
            .into())
    } else {
        let l = legacy::read(bytes)?;
        finish(&l.pickle, Storages::Legacy(l.blobs), &ctx)
    }
}

/// The file's name (for messages) and the limits to enforce.
struct Ctx<'a> {
    path: &'a Path,
    limits: &'a WeightLimits,
}

fn read_zip(bytes: &[u8], ctx: &Ctx) -> Result<PthFile, Failure> {
    let archive = zip::Archive::parse(bytes)?;
    let prefix =
        find_prefix(&archive).ok_or("zip archive without a data.pkl: not a torch.save checkpoint")?;
    if archive.entries.iter().any(|e| e.name.starts_with(&format!("{prefix}code/"))) {
        return Err(Failure::Bad(
            "a TorchScript archive (torch.jit.save) is not supported; save model.state_dict() with torch.save"
                .into(),
        ));
    }
    if let Some(e) = archive.find(&format!("{prefix}byteorder")) {
        match archive.read(e)?.trim_ascii() {
            b"little" => {}
            other => {
                let order = String::from_utf8_lossy(other);
                return Err(format!("byte order '{order}' is not supported (only little-endian)").into());
            }
        }
    }
    let pkl = archive.find(&format!("{prefix}data.pkl")).ok_or("data.pkl vanished")?;
    let pickle = pickle::load(&archive.read(pkl)?, 0)?;
    finish(
        &pickle,
        Storages::Zip { archive, prefix: format!("{prefix}data/"), inflated: HashMap::new() },
        ctx,
    )
}

/// The folder holding `data.pkl`, with its trailing slash ("" if at the root). The first
/// one wins; torch writes exactly one.
fn find_prefix(archive: &zip::Archive) -> Option<String> {
    archive.entries.iter().find_map(|e| {
        let prefix = e.name.strip_suffix("data.pkl")?;
        let folder_ok = prefix.is_empty() || (prefix.ends_with('/') && prefix.matches('/').count() == 1);
        folder_ok.then(|| prefix.to_string())
    })
}

/// Where storage data comes from: zip entries (borrowed, or inflated once and cached) or the
/// legacy blobs.
enum Storages<'a> {
    Zip { archive: zip::Archive<'a>, prefix: String, inflated: HashMap<String, Vec<u8>> },
    Legacy(HashMap<String, &'a [u8]>),
}

impl Storages<'_> {
    fn get(&mut self, key: &str) -> Result<&[u8], String> {
        match self {
            Storages::Legacy(blobs) => {
                blobs.get(key).copied().ok_or_else(|| format!("storage '{key}' is missing"))
            }
            Storages::Zip { archive, prefix, inflated } => {
                if !inflated.contains_key(key) {
                    let e = archive
                        .find(&format!("{prefix}{key}"))
                        .ok_or_else(|| format!("storage '{key}' is missing"))?;
                    match archive.read(e)? {
                        Cow::Borrowed(b) => return Ok(b),
                        Cow::Owned(v) => inflated.insert(key.to_string(), v),
                    };
                }
                inflated.get(key).map(Vec::as_slice).ok_or_else(|| format!("storage '{key}' is missing"))
            }
        }
    }
}

fn finish(pickle: &Pickle, mut storages: Storages, ctx: &Ctx) -> Result<PthFile, Failure> {
    let sel = select::select(&pickle.heap, &pickle.root)?;
    // Limits first: nothing has been inflated or copied yet.
    ctx.limits.check_count(ctx.path, sel.tensors.len()).map_err(Failure::Limit)?;
    for (name, t) in &sel.tensors {
        let elem = t.dtype.map_or(1, |d| d.size()) as u64;
        let bytes = t.size.iter().try_fold(elem, |n, &d| n.checked_mul(d as u64)).unwrap_or(u64::MAX);
        ctx.limits.check_tensor(ctx.path, name, bytes).map_err(Failure::Limit)?;
    }
    // Fetch (and inflate) every storage the tensors use first: their total size is what
    // bounds the memory the tensors may take.
    let mut stored = HashMap::new();
    for (name, t) in &sel.tensors {
        if !stored.contains_key(t.storage.key.as_str()) {
            let len = storages.get(&t.storage.key).map_err(|e| format!("tensor '{name}': {e}"))?.len();
            stored.insert(t.storage.key.as_str(), len);
        }
    }
    let stored_bytes = stored.values().fold(0usize, |a, &b| a.saturating_add(b));
    let mut budget = stored_bytes.saturating_mul(2).saturating_add(MATERIALISE_SLACK);
    let mut tensors = Vec::with_capacity(sel.tensors.len());
    for (name, t) in &sel.tensors {
        let data = storages
            .get(&t.storage.key)
            .and_then(|blob| materialise(t, blob, &mut budget))
            .map_err(|e| format!("tensor '{name}': {e}"))?;
        tensors.push((name.clone(), data));
    }
    Ok(PthFile { state: StateDict { tensors, extras: sel.extras }, source_key: sel.source_key })
}

/// Copy a strided view out of its storage's data into dense row-major bytes.
fn materialise(t: &TensorRef, blob: &[u8], budget: &mut usize) -> Result<TensorData, String> {
    let dtype = t.dtype.ok_or_else(|| format!("dtype {} is not supported", t.dtype_name))?;
    let elem = dtype.size();
    let (start, len) = t.storage.byte_range().ok_or("storage size overflows")?;
    let storage = start.checked_add(len).and_then(|end| blob.get(start..end)).ok_or_else(|| {
        format!("storage declares {len} bytes at offset {start} but its data has {} bytes", blob.len())
    })?;
    let numel = t.size.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("size overflows")?;
    let nbytes = numel.checked_mul(elem).ok_or("size overflows")?;
    *budget =
        budget.checked_sub(nbytes).ok_or("the tensors would need far more memory than the file holds")?;
    let shape = t.size.clone();
    if numel == 0 {
        return Ok(TensorData { dtype, shape, bytes: Vec::new() });
    }
    // The furthest element the view touches (every extent is at least 1 here).
    let mut last = t.offset;
    for (&n, &s) in t.size.iter().zip(&t.stride) {
        last = (n - 1).checked_mul(s).and_then(|x| x.checked_add(last)).ok_or("view overflows")?;
    }
    let storage_numel = storage.len() / elem;
    if last >= storage_numel {
        return Err(format!("view reaches element {last} of a storage of {storage_numel} elements"));
    }
    let mut bytes = Vec::with_capacity(nbytes);
    if is_contiguous(&t.size, &t.stride) {
        let start = t.offset * elem;
        bytes.extend_from_slice(storage.get(start..start + nbytes).ok_or("view out of range")?);
    } else {
        gather(storage, elem, t.offset, &t.size, &t.stride, &mut bytes).ok_or("view out of range")?;
    }
    Ok(TensorData { dtype, shape, bytes })
}

/// Row-major contiguous, ignoring the stride of extent-1 dimensions.
fn is_contiguous(size: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1;
    for (&n, &s) in size.iter().zip(stride).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected *= n;
    }
    true
}

/// Strided copy: an odometer over all but the last dimension, copying the innermost run in
/// one go when it is unit-stride. The caller has bounds-checked the view; `get` keeps a
/// mistake an error rather than a panic.
fn gather(
    src: &[u8],
    elem: usize,
    offset: usize,
    size: &[usize],
    stride: &[usize],
    out: &mut Vec<u8>,
) -> Option<()> {
    let Some((&inner_n, outer)) = size.split_last() else {
        out.extend_from_slice(src.get(offset * elem..(offset + 1) * elem)?);
        return Some(());
    };
    let inner_s = stride[outer.len()];
    let mut idx = vec![0usize; outer.len()];
    loop {
        let base = offset + idx.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        if inner_s == 1 {
            out.extend_from_slice(src.get(base * elem..(base + inner_n) * elem)?);
        } else {
            for j in 0..inner_n {
                let p = (base + j * inner_s) * elem;
                out.extend_from_slice(src.get(p..p + elem)?);
            }
        }
        // Advance the odometer; done when it wraps around.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return Some(());
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < outer[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests;
