//! safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
//! shape and byte range, then the raw little-endian data. Our model files use it with the
//! architecture and hyper-parameters in `__metadata__`.
//!
//! Opening a file reads and validates only the header; tensor data stays memory-mapped until a
//! model is prepared, and f32 tensors are viewed in place when the mapping is suitably aligned.

use super::{DType, StateDict, TensorData};
use crate::error::{Error, Result};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest JSON header we accept (the format's own reference implementation uses 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;
/// Most tensors a header may declare at all (a sanity bound for the JSON parse; the configurable
/// limit is [`super::WeightLimits`], checked by [`SafeTensors::open_with`]).
pub const MAX_TENSORS: usize = 10_000_000;

/// One tensor's entry in the header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Byte range relative to the start of the data section.
    pub begin: usize,
    pub end: usize,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The parsed header.
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub tensors: Vec<TensorInfo>,
    pub metadata: BTreeMap<String, String>,
    /// Offset of the data section from the start of the file.
    pub data_start: usize,
}

impl Header {
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Parse and validate the header of a safetensors byte string of total length `file_len` whose
/// first bytes are `head` (at least the 8-byte length plus the JSON when it fits).
pub fn parse_header(head: &[u8], file_len: u64) -> Result<Header, String> {
    if head.len() < 8 {
        return Err("file too short for a safetensors header".into());
    }
    let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES {
        return Err(format!("header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit"));
    }
    if 8 + n > file_len {
        return Err(format!("header length {n} runs past the end of the file ({file_len} bytes)"));
    }
    let n = n as usize;
    let json = head.get(8..8 + n).ok_or("header not fully read")?;
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("header is not valid JSON: {e}"))?;
    let obj = value.as_object().ok_or("header is not a JSON object")?;
    if obj.len() > MAX_TENSORS + 1 {
        return Err(format!("{} entries exceed the limit of {MAX_TENSORS} tensors", obj.len()));
    }
    let data_len = (file_len - 8 - n as u64) as usize;
    let mut header = Header { data_start: 8 + n, ..Header::default() };
    for (name, entry) in obj {
        if name == "__metadata__" {
            let m = entry.as_object().ok_or("__metadata__ is not an object")?;
            for (k, v) in m {
                let v = v.as_str().ok_or_else(|| format!("metadata '{k}' is not a string"))?;
                header.metadata.insert(k.clone(), v.to_string());
            }
            continue;
        }
        let e = entry.as_object().ok_or_else(|| format!("tensor '{name}': entry is not an object"))?;
        let dtype_s =
            e.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| format!("tensor '{name}': no dtype"))?;
        let dtype = DType::from_name(dtype_s)
            .ok_or_else(|| format!("tensor '{name}': unsupported dtype {dtype_s}"))?;
        let shape: Vec<usize> = e
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| format!("tensor '{name}': no shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("tensor '{name}': shape has a non-integer dimension"))?;
        let offs = e
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .ok_or_else(|| format!("tensor '{name}': data_offsets must be [begin, end]"))?;
        let begin = offs[0].as_u64().ok_or_else(|| format!("tensor '{name}': bad offset"))? as usize;
        let end = offs[1].as_u64().ok_or_else(|| format!("tensor '{name}': bad offset"))? as usize;
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| format!("tensor '{name}': shape {shape:?} overflows"))?;
        let nbytes = numel.checked_mul(dtype.size()).ok_or_else(|| format!("tensor '{name}': too large"))?;
        if begin > end || end > data_len {
            return Err(format!(
                "tensor '{name}': byte range {begin}..{end} outside the {data_len}-byte data section"
            ));
        }
        if end - begin != nbytes {
            return Err(format!(
                "tensor '{name}': {} bytes stored for shape {shape:?} of {dtype_s} ({nbytes} expected)",
                end - begin
            ));
        }
        header.tensors.push(TensorInfo { name: name.clone(), dtype, shape, begin, end });
    }
    // Overlapping ranges would let one corrupt file alias tensors; the format forbids it.
    let mut ranges: Vec<(usize, usize, &str)> = header
        .tensors
        .iter()
        .filter(|t| t.end > t.begin)
        .map(|t| (t.begin, t.end, t.name.as_str()))
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(format!("tensors '{}' and '{}' overlap", w[0].2, w[1].2));
        }
    }
    // Keep file order stable for users: order by data offset, as writers lay tensors out.
    header.tensors.sort_by(|a, b| (a.begin, &a.name).cmp(&(b.begin, &b.name)));
    Ok(header)
}

enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// An opened safetensors file: validated header plus the mapped (or owned) bytes.
pub struct SafeTensors {
    path: PathBuf,
    header: Header,
    backing: Backing,
}

impl SafeTensors {
    /// Map a file and validate its header. Tensor bytes are not touched.
    pub fn open(path: &Path) -> Result<Self> {
        SafeTensors::open_with(path, &super::WeightLimits::default())
    }

    /// [`SafeTensors::open`], refusing a header that declares more or larger tensors than
    /// `limits` allow (before any tensor data is read).
    pub fn open_with(path: &Path, limits: &super::WeightLimits) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        // SAFETY: the mapping is read-only; a file truncated by another process while we hold
        // it is outside what any reader can defend against, as for every mmap-based loader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let header = parse_header(&map, len).map_err(|r| Error::format(path, r))?;
        limits.check_count(path, header.tensors.len())?;
        for t in &header.tensors {
            limits.check_tensor(path, &t.name, (t.end - t.begin) as u64)?;
        }
        Ok(SafeTensors { path: path.to_path_buf(), header, backing: Backing::Mapped(map) })
    }

    /// Parse from bytes already in memory (`name` is used in messages).
    pub fn from_bytes(bytes: Vec<u8>, name: &Path) -> Result<Self> {
        let header = parse_header(&bytes, bytes.len() as u64).map_err(|r| Error::format(name, r))?;
        Ok(SafeTensors { path: name.to_path_buf(), header, backing: Backing::Owned(bytes) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.header.metadata
    }

    fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }

    /// Raw bytes of a tensor.
    pub fn raw(&self, t: &TensorInfo) -> &[u8] {
        let s = self.header.data_start;
        &self.bytes()[s + t.begin..s + t.end]
    }

    /// A tensor as f32: borrowed from the mapping when it is f32 and 4-byte aligned, otherwise
    /// converted (f16/bf16 are widened exactly).
    pub fn f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        let t = self.header.get(name).ok_or_else(|| Error::tensor(&self.path, name, "missing"))?;
        let raw = self.raw(t);
        if t.dtype == DType::F32 && cfg!(target_endian = "little") {
            if let Ok(v) = bytemuck::try_cast_slice::<u8, f32>(raw) {
                return Ok(Cow::Borrowed(v));
            }
        }
        super::to_f32(t.dtype, raw, t.numel()).map(Cow::Owned).map_err(|r| Error::tensor(&self.path, name, r))
    }

    /// Copy everything into an owned [`StateDict`] (used by conversion and tests).
    pub fn to_state_dict(&self) -> StateDict {
        let tensors = self
            .header
            .tensors
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    TensorData { dtype: t.dtype, shape: t.shape.clone(), bytes: self.raw(t).to_vec() },
                )
            })
            .collect();
        StateDict { tensors, extras: BTreeMap::new() }
    }
}

/// Serialise tensors and metadata. Tensors are written in the given order; the header is padded
/// with spaces to a multiple of 8 bytes so every tensor starts 8-byte aligned in the file.
pub fn write(
    w: &mut impl Write,
    tensors: &[(String, TensorData)],
    metadata: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> =
            metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(m));
    }
    // The format allows no holes in the data section, so tensors are not padded; instead they are
    // stored widest element type first (stable within a type), which keeps every tensor aligned to
    // its element size (the data section starts 8-byte aligned), as the reference implementation does.
    let mut order: Vec<&(String, TensorData)> = tensors.iter().collect();
    order.sort_by_key(|(_, t)| std::cmp::Reverse(t.dtype.size()));
    let mut offset = 0usize;
    for (name, t) in &order {
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": t.dtype.name(),
                "shape": t.shape,
                "data_offsets": [offset, offset + t.bytes.len()],
            }),
        );
        offset += t.bytes.len();
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header)).map_err(std::io::Error::other)?;
    while (8 + json.len()) % 8 != 0 {
        json.push(b' ');
    }
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)?;
    for (_, t) in order {
        w.write_all(&t.bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let tensors = vec![
            ("b".to_string(), TensorData::from_f32(vec![3], &[1.0, 2.0, 3.0])),
            (
                "a".to_string(),
                TensorData { dtype: DType::F16, shape: vec![2], bytes: vec![0, 0x3c, 0, 0xc0] },
            ),
            ("w".to_string(), TensorData::from_f32(vec![2, 2], &[0.5, -0.5, 4.0, 8.0])),
        ];
        let mut meta = BTreeMap::new();
        meta.insert("arch".to_string(), "edsr".to_string());
        let mut out = Vec::new();
        write(&mut out, &tensors, &meta).unwrap();
        out
    }

    #[test]
    fn round_trip() {
        let st = SafeTensors::from_bytes(sample(), Path::new("mem")).unwrap();
        assert_eq!(st.metadata()["arch"], "edsr");
        assert_eq!(&*st.f32("b").unwrap(), &[1.0, 2.0, 3.0]);
        assert_eq!(&*st.f32("a").unwrap(), &[1.0, -2.0]);
        assert!(matches!(st.f32("w").unwrap(), Cow::Borrowed(_)) || cfg!(target_endian = "big"));
        assert_eq!(st.header().data_start % 8, 0);
        let names: Vec<_> = st.header().tensors.iter().map(|t| t.name.as_str()).collect();
        // Widest element type first, and no holes between tensors (the format forbids them).
        assert_eq!(names, ["b", "w", "a"]);
        let mut end = 0;
        for t in &st.header().tensors {
            assert_eq!(t.begin, end, "{} does not follow the previous tensor", t.name);
            end = t.end;
        }
        assert!(matches!(st.f32("zz"), Err(Error::Tensor { .. })));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(SafeTensors::from_bytes(bytes[..len].to_vec(), Path::new("t")).is_err(), "len {len}");
        }
    }

    #[test]
    fn rejects_bad_headers() {
        let bad = |json: &str| {
            let mut b = (json.len() as u64).to_le_bytes().to_vec();
            b.extend_from_slice(json.as_bytes());
            b.extend_from_slice(&[0u8; 16]);
            SafeTensors::from_bytes(b, Path::new("x")).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(bad("[1]").contains("not a JSON object"));
        assert!(bad(r#"{"t":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}"#).contains("expected"));
        assert!(bad(r#"{"t":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}"#).contains("outside"));
        assert!(bad(r#"{"t":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#).contains("unsupported dtype"));
        assert!(bad(
            r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        )
        .contains("overlap"));
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(SafeTensors::from_bytes(huge, Path::new("h")).is_err());
    }
}
