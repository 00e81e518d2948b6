//! The legacy format (`torch.save(..., _use_new_zipfile_serialization=False)`, and every
//! checkpoint written before PyTorch 1.6): five pickles back to back, then raw storage data.
//!
//! 1. the magic number 0x1950a86a20f9469cfc6c, 2. the protocol version 1001, 3. `sys_info`
//!    (endianness and C type sizes), 4. the object itself, whose persistent ids name storages
//!    by key, 5. the list of storage keys; then for each key in that order an 8-byte
//!    little-endian element count followed by the elements.
//!
//! The blobs carry no type, so their element size comes from the storage type under which
//! the main pickle referenced each key. The even older tar-based format (PyTorch < 0.4) is
//! recognised and refused.

use std::collections::HashMap;

use super::pickle::{self, Pickle, Value};

/// 0x1950a86a20f9469cfc6c as the little-endian bytes a LONG1 opcode carries.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// Does the data start with the legacy magic-number pickle?
pub fn has_magic(data: &[u8]) -> bool {
    // The magic pickle is a dozen bytes; a bounded prefix keeps sniffing cheap on any input.
    let head = &data[..data.len().min(64)];
    pickle::load(head, 0).is_ok_and(|p| matches!(p.root, Value::BigInt(b) if *b == MAGIC))
}

/// The tar-based format of PyTorch < 0.4 (a tar with `storages`, `tensors` and `pickle`).
pub fn is_tar(data: &[u8]) -> bool {
    data.get(257..262) == Some(b"ustar")
}

/// The main pickle and the data of each storage key.
pub struct Legacy<'a> {
    pub pickle: Pickle,
    pub blobs: HashMap<String, &'a [u8]>,
}

pub fn read(data: &[u8]) -> Result<Legacy<'_>, String> {
    let magic = pickle::load(data, 0).ok().filter(|p| matches!(&p.root, Value::BigInt(b) if **b == MAGIC));
    let Some(magic) = magic else {
        return Err("not a PyTorch checkpoint: neither a zip archive nor the legacy magic number".into());
    };
    let version = pickle::load(data, magic.end)?;
    if !matches!(version.root, Value::Int(PROTOCOL_VERSION)) {
        return Err("legacy format: unsupported protocol version".into());
    }
    let sys_info = pickle::load(data, version.end)?;
    if let Some(Value::Bool(false)) = sys_info.heap.get(&sys_info.root, "little_endian") {
        return Err("legacy format: big-endian byte order is not supported".into());
    }
    let main = pickle::load(data, sys_info.end)?;
    let keys = pickle::load(data, main.end)?;
    let key_list = match &keys.root {
        Value::List(_) => keys.heap.items(&keys.root).unwrap_or_default(),
        _ => return Err("legacy format: storage key list is not a list".into()),
    };

    let mut elem_sizes = HashMap::new();
    for s in &main.storages {
        elem_sizes.entry(s.key.as_str()).or_insert(s.elem_size);
    }
    let mut blobs = HashMap::new();
    let mut pos = keys.end;
    for key in key_list {
        let key = match key {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            _ => return Err("legacy format: a storage key is not a string".into()),
        };
        let elem =
            *elem_sizes.get(key.as_str()).ok_or_else(|| format!("storage '{key}' is never referenced"))?;
        let count = data.get(pos..pos + 8).ok_or_else(|| format!("storage '{key}': truncated"))?;
        let count = u64::from_le_bytes(count.try_into().map_err(|_| "truncated")?);
        let nbytes = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(elem))
            .ok_or_else(|| format!("storage '{key}': size overflows"))?;
        let start = pos + 8;
        let blob = start
            .checked_add(nbytes)
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| format!("storage '{key}': {nbytes} bytes run past the end of the file"))?;
        blobs.insert(key, blob);
        pos = start + nbytes;
    }
    Ok(Legacy { pickle: main, blobs })
}
