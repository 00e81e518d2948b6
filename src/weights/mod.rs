//! Weights: the tensors of a checkpoint as read from disk, independent of the file format.
//!
//! Readers (safetensors, PyTorch .pth) produce a [`StateDict`]; architecture detection and model
//! builders consume it.

pub mod ncnn;
pub mod pth;

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// How much a checkpoint may declare before anything is allocated for it: a hostile or corrupt
/// file must not make a server allocate without bound. The defaults are far above any real
/// super-resolution model (the largest have a few thousand tensors of a few MiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightLimits {
    /// Most tensors in one file (`--max-tensors`).
    pub max_tensors: usize,
    /// Largest single tensor, in bytes (`--max-tensor-mib` in MiB).
    pub max_tensor_bytes: u64,
}

impl Default for WeightLimits {
    fn default() -> Self {
        WeightLimits { max_tensors: 100_000, max_tensor_bytes: 4 << 30 }
    }
}

impl WeightLimits {
    /// `n` tensors declared by `file`.
    pub fn check_count(&self, file: &Path, n: usize) -> Result<()> {
        if n > self.max_tensors {
            return Err(Error::Limit {
                what: format!("{}: number of tensors", file.display()),
                value: n as u64,
                limit: self.max_tensors as u64,
                flag: "--max-tensors".into(),
            });
        }
        Ok(())
    }

    /// A tensor of `bytes` bytes declared by `file`.
    pub fn check_tensor(&self, file: &Path, name: &str, bytes: u64) -> Result<()> {
        if bytes > self.max_tensor_bytes {
            const MIB: u64 = 1 << 20;
            return Err(Error::Limit {
                what: format!("{}: tensor '{name}' size in MiB", file.display()),
                value: bytes.div_ceil(MIB),
                limit: self.max_tensor_bytes / MIB,
                flag: "--max-tensor-mib".into(),
            });
        }
        Ok(())
    }

    /// Every tensor of a state dict already read (importers whose input size bounds their memory).
    pub fn check_state_dict(&self, file: &Path, sd: &StateDict) -> Result<()> {
        self.check_count(file, sd.tensors.len())?;
        sd.tensors.iter().try_for_each(|(n, t)| self.check_tensor(file, n, t.bytes.len() as u64))
    }
}

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The safetensors spelling.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F64 => "F64",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::I16 => "I16",
            DType::I8 => "I8",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
        }
    }

    pub fn from_name(s: &str) -> Option<DType> {
        Some(match s {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "F64" => DType::F64,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "I16" => DType::I16,
            "I8" => DType::I8,
            "U8" => DType::U8,
            "BOOL" => DType::Bool,
            _ => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }
}

/// A dense, row-major, little-endian tensor owned in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl TensorData {
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        assert_eq!(shape.iter().product::<usize>(), values.len());
        TensorData { dtype: DType::F32, shape, bytes: bytemuck::cast_slice(values).to_vec() }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Widen (or narrow, for f64) to f32. Integer tensors are not weights: an error.
    pub fn to_f32(&self) -> std::result::Result<Vec<f32>, String> {
        to_f32(self.dtype, &self.bytes, self.numel())
    }
}

/// Decode `n` little-endian elements of `dtype` from `bytes` as f32.
pub fn to_f32(dtype: DType, bytes: &[u8], n: usize) -> std::result::Result<Vec<f32>, String> {
    if bytes.len() != n * dtype.size() {
        return Err(format!("{} bytes for {n} elements of {}", bytes.len(), dtype.name()));
    }
    Ok(match dtype {
        DType::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        DType::F16 => bytes.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunk of 8")) as f32)
            .collect(),
        other => return Err(format!("{} is not a floating-point type", other.name())),
    })
}

/// IEEE 754 half to single precision, exact for every input (subnormals, infinities, NaN).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise the mantissa.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Named tensors in file order, plus non-tensor scalar entries (stored as strings) that some
/// checkpoints carry next to their weights.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    pub tensors: Vec<(String, TensorData)>,
    pub extras: BTreeMap<String, String>,
}

impl StateDict {
    pub fn get(&self, name: &str) -> Option<&TensorData> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversion_is_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 5.960464477539063e-8);
        assert_eq!(f16_to_f32(0x03ff), 6.097555160522461e-5);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
    }

    #[test]
    fn limits_name_the_file_and_the_flag() {
        let l = WeightLimits { max_tensors: 2, max_tensor_bytes: 3 << 20 };
        let f = Path::new("m.pth");
        assert!(l.check_count(f, 2).is_ok() && l.check_tensor(f, "w", 3 << 20).is_ok());
        let e = l.check_count(f, 3).unwrap_err().to_string();
        assert!(e.contains("m.pth") && e.contains("--max-tensors") && e.contains("(3)"), "{e}");
        let e = l.check_tensor(f, "body.0.weight", (3 << 20) + 1).unwrap_err();
        assert!(matches!(e, Error::Limit { value: 4, limit: 3, .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("body.0.weight") && e.contains("--max-tensor-mib"), "{e}");
    }
}

pub mod safetensors;
