//! Reader for ncnn models: the text `.param` graph (magic 7767517) and the `.bin` weights.
//!
//! `.param`: line 1 is the magic, line 2 `layer_count blob_count`, then one layer per line:
//! `Type name n_in n_out in... out... k=v ...`, where an integer key `k <= -23300` holds an array
//! `-233xx=n,v1,..,vn` for parameter `xx`. A value with a `.` or an exponent is a float.
//!
//! `.bin`: the weight blobs of the layers, in layer order, with no names. What a layer stores is
//! fixed by its type and parameters (e.g. a `Convolution` stores `weight_data_size` weights, then
//! `num_output` biases if `bias_term`). Weights are loaded with a 4-byte tag that says their
//! storage (`0x01306B47` fp16, `0` or `0x0002C056` fp32, `0x000D4B38` int8, any other value: a
//! 256-entry fp32 table followed by one uint8 index per weight); biases, PReLU slopes and scales
//! are raw fp32 with no tag. Half-precision weights are kept as F16 (widened exactly when used).

use super::{DType, TensorData};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const MAGIC: &str = "7767517";
const TAG_FP16: u32 = 0x0130_6B47;
const TAG_INT8: u32 = 0x000D_4B38;
const TAG_FP32_RAW: u32 = 0x0002_C056;

/// Largest layer or blob count and weight element count accepted (far above any real model), so a
/// corrupt file cannot ask for absurd allocations.
const MAX_LAYERS: usize = 1 << 16;
const MAX_ELEMENTS: usize = 1 << 30;

/// A parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f32),
    Array(Vec<f32>),
}

/// One layer of the graph with its weight blobs (in `.bin` order: `weight`, `bias`, `slope`, ...).
#[derive(Clone, Debug)]
pub struct Layer {
    pub kind: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub params: BTreeMap<i32, Value>,
    pub blobs: Vec<(&'static str, TensorData)>,
    /// 1-based line in the `.param` file.
    pub line: usize,
}

impl Layer {
    pub fn int(&self, key: i32, default: i64) -> i64 {
        match self.params.get(&key) {
            Some(Value::Int(v)) => *v,
            Some(Value::Float(v)) => *v as i64,
            _ => default,
        }
    }

    pub fn float(&self, key: i32, default: f32) -> f32 {
        match self.params.get(&key) {
            Some(Value::Int(v)) => *v as f32,
            Some(Value::Float(v)) => *v,
            _ => default,
        }
    }

    pub fn array(&self, key: i32) -> Option<&[f32]> {
        match self.params.get(&key) {
            Some(Value::Array(v)) => Some(v),
            _ => None,
        }
    }

    pub fn blob(&self, role: &str) -> Option<&TensorData> {
        self.blobs.iter().find(|(r, _)| *r == role).map(|(_, t)| t)
    }

    /// `Type 'name' (line N)`, for error messages.
    pub fn describe(&self) -> String {
        format!("{} '{}' (line {})", self.kind, self.name, self.line)
    }
}

/// A whole ncnn model.
#[derive(Clone, Debug)]
pub struct Model {
    pub param_path: PathBuf,
    pub bin_path: PathBuf,
    pub layers: Vec<Layer>,
}

/// Whether `head` (the start of a file) is an ncnn text param.
pub fn looks_like_param(head: &[u8]) -> bool {
    let t = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    t.starts_with(MAGIC.as_bytes()) && t.get(MAGIC.len()).is_some_and(|c| c.is_ascii_whitespace())
}

/// The `.param` and `.bin` paths for a model given by either of them.
pub fn paths(path: &Path) -> (PathBuf, PathBuf) {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("bin")) {
        (path.with_extension("param"), path.to_path_buf())
    } else {
        (path.to_path_buf(), path.with_extension("bin"))
    }
}

/// Read `.param` + `.bin` (given either path; the other is beside it with the same stem).
pub fn read(path: &Path) -> Result<Model> {
    let (param_path, bin_path) = paths(path);
    let text = std::fs::read(&param_path).map_err(|e| Error::io(&param_path, e))?;
    let bin = std::fs::read(&bin_path).map_err(|e| Error::io(&bin_path, e))?;
    from_bytes(&text, &bin, &param_path, &bin_path)
}

/// Parse a model from the contents of its two files (the paths name them in errors).
pub fn from_bytes(param: &[u8], bin: &[u8], param_path: &Path, bin_path: &Path) -> Result<Model> {
    let text =
        std::str::from_utf8(param).map_err(|_| Error::format(param_path, "ncnn .param is not UTF-8 text"))?;
    let mut layers = parse_param(text).map_err(|r| Error::format(param_path, r))?;
    // Problems of the graph itself (unknown types, absurd sizes) belong to the .param.
    for l in &layers {
        blob_specs(l).map_err(|r| Error::format(param_path, r))?;
    }
    load_bin(&mut layers, bin).map_err(|r| Error::format(bin_path, r))?;
    Ok(Model { param_path: param_path.to_path_buf(), bin_path: bin_path.to_path_buf(), layers })
}

/// Parse the text graph (no weights).
pub fn parse_param(text: &str) -> Result<Vec<Layer>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, l)) if l.trim() == MAGIC => {}
        _ => return Err(format!("not an ncnn text .param (the first line must be {MAGIC})")),
    }
    let (ln, counts) = lines.next().ok_or("missing the 'layer_count blob_count' line")?;
    let nums: Vec<usize> =
        counts.split_whitespace().map(|t| t.parse()).collect::<Result<_, _>>().map_err(|_| {
            format!("line {}: expected 'layer_count blob_count', found '{}'", ln + 1, counts.trim())
        })?;
    let [layer_count, blob_count] = nums[..] else {
        return Err(format!("line {}: expected 'layer_count blob_count', found '{}'", ln + 1, counts.trim()));
    };
    if layer_count > MAX_LAYERS || blob_count > MAX_LAYERS {
        return Err(format!("{layer_count} layers / {blob_count} blobs is more than this reader accepts"));
    }
    let mut layers = Vec::with_capacity(layer_count);
    for (i, l) in lines {
        let line = i + 1;
        let bad = |what: &str| format!("line {line}: {what}");
        let tok: Vec<&str> = l.split_whitespace().collect();
        if tok.len() < 4 {
            return Err(bad("a layer needs at least 'Type name n_inputs n_outputs'"));
        }
        let nin: usize = tok[2].parse().map_err(|_| bad("bad input count"))?;
        let nout: usize = tok[3].parse().map_err(|_| bad("bad output count"))?;
        if nin > MAX_LAYERS || nout > MAX_LAYERS || tok.len() < 4 + nin + nout {
            return Err(bad(&format!(
                "{} declares {nin} inputs and {nout} outputs that are not all listed",
                tok[1]
            )));
        }
        let mut params = BTreeMap::new();
        for kv in &tok[4 + nin + nout..] {
            let (k, v) =
                kv.split_once('=').ok_or_else(|| bad(&format!("parameter '{kv}' is not key=value")))?;
            let k: i32 = k.parse().map_err(|_| bad(&format!("parameter key '{k}' is not an integer")))?;
            if k <= -23300 {
                let mut it = v.split(',');
                let n: usize = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| bad(&format!("array parameter {k} lacks its length")))?;
                let vals: Vec<f32> = it
                    .map(|t| t.parse::<f32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad(&format!("array parameter {k} has a non-number")))?;
                if vals.len() != n {
                    return Err(bad(&format!("array parameter {k} says {n} values but has {}", vals.len())));
                }
                params.insert(-k - 23300, Value::Array(vals));
            } else if v.contains(['.', 'e', 'E']) {
                let f: f32 = v.parse().map_err(|_| bad(&format!("parameter {k}={v} is not a number")))?;
                params.insert(k, Value::Float(f));
            } else {
                let n: i64 = v.parse().map_err(|_| bad(&format!("parameter {k}={v} is not an integer")))?;
                params.insert(k, Value::Int(n));
            }
        }
        layers.push(Layer {
            kind: tok[0].to_string(),
            name: tok[1].to_string(),
            inputs: tok[4..4 + nin].iter().map(|s| s.to_string()).collect(),
            outputs: tok[4 + nin..4 + nin + nout].iter().map(|s| s.to_string()).collect(),
            params,
            blobs: Vec::new(),
            line,
        });
    }
    if layers.len() != layer_count {
        return Err(format!("the header says {layer_count} layers but the file has {}", layers.len()));
    }
    Ok(layers)
}

/// How a blob is loaded: with a storage tag (weights) or as raw fp32.
#[derive(Clone, Copy)]
enum Storage {
    Tagged,
    Raw,
}

/// The blobs a layer stores, in `.bin` order: (role, element count, storage).
fn blob_specs(l: &Layer) -> Result<Vec<(&'static str, usize, Storage)>, String> {
    let count = |key: i32, what: &str| -> Result<usize, String> {
        let v = l.int(key, 0);
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| format!("{}: {what} ({key}={v}) is out of range", l.describe()))
    };
    let mut v = Vec::new();
    match l.kind.as_str() {
        "Convolution" | "ConvolutionDepthWise" | "Deconvolution" | "DeconvolutionDepthWise" => {
            v.push(("weight", count(6, "weight_data_size")?, Storage::Tagged));
            if l.int(5, 0) != 0 {
                v.push(("bias", count(0, "num_output")?, Storage::Raw));
            }
            if l.int(8, 0) != 0 {
                return Err(format!("{}: int8-quantised layers are not supported", l.describe()));
            }
        }
        "InnerProduct" => {
            v.push(("weight", count(2, "weight_data_size")?, Storage::Tagged));
            if l.int(1, 0) != 0 {
                v.push(("bias", count(0, "num_output")?, Storage::Raw));
            }
            if l.int(8, 0) != 0 {
                return Err(format!("{}: int8-quantised layers are not supported", l.describe()));
            }
        }
        "PReLU" => v.push(("slope", count(0, "num_slope")?, Storage::Raw)),
        "Scale" => {
            // -233 means the scale comes from a second input instead of the file.
            if l.int(0, 0) != -233 {
                v.push(("scale", count(0, "scale_data_size")?, Storage::Raw));
                if l.int(1, 0) != 0 {
                    v.push(("bias", count(0, "scale_data_size")?, Storage::Raw));
                }
            }
        }
        "Bias" => v.push(("bias", count(0, "bias_data_size")?, Storage::Raw)),
        "BatchNorm" => {
            let c = count(0, "channels")?;
            for r in ["slope", "mean", "var", "bias"] {
                v.push((r, c, Storage::Raw));
            }
        }
        "MemoryData" => {
            let n = [0, 1, 2, 11]
                .iter()
                .try_fold(1usize, |acc, &k| acc.checked_mul(usize::try_from(l.int(k, 0).max(1)).ok()?))
                .unwrap_or(usize::MAX);
            if n > MAX_ELEMENTS {
                return Err(format!("{}: MemoryData of {n} elements is out of range", l.describe()));
            }
            v.push(("data", n, Storage::Raw));
        }
        t if WEIGHTLESS.contains(&t) => {}
        t => {
            return Err(format!(
                "{}: unknown ncnn layer type '{t}' (its weights, if any, cannot be located in the .bin)",
                l.describe()
            ))
        }
    }
    Ok(v)
}

/// Layer types that store nothing in the `.bin`.
const WEIGHTLESS: &[&str] = &[
    "Input",
    "Split",
    "Concat",
    "Slice",
    "Crop",
    "Eltwise",
    "BinaryOp",
    "UnaryOp",
    "Interp",
    "PixelShuffle",
    "Pooling",
    "ReLU",
    "Sigmoid",
    "TanH",
    "Clip",
    "Swish",
    "HardSigmoid",
    "HardSwish",
    "Mish",
    "GELU",
    "Softmax",
    "Dropout",
    "Noop",
    "Flatten",
    "Reshape",
    "Permute",
    "Padding",
    "Reorg",
    "ShuffleChannel",
];

/// Read every layer's blobs from the `.bin` contents; the file must be used up exactly.
pub fn load_bin(layers: &mut [Layer], bin: &[u8]) -> Result<(), String> {
    let mut pos = 0usize;
    for l in layers.iter_mut() {
        for (role, n, storage) in blob_specs(l)? {
            let short = |need: usize, pos: usize| {
                format!(
                    "the .bin ends inside {}'s {role} ({n} values): {need} more bytes needed at offset {pos}, {} left",
                    l.describe(),
                    bin.len().saturating_sub(pos)
                )
            };
            let take = |pos: &mut usize, len: usize| -> Result<&[u8], String> {
                let s = bin.get(*pos..*pos + len).ok_or_else(|| short(len, *pos))?;
                *pos += len;
                Ok(s)
            };
            let t = match storage {
                Storage::Raw => {
                    TensorData { dtype: DType::F32, shape: vec![n], bytes: take(&mut pos, n * 4)?.to_vec() }
                }
                Storage::Tagged => {
                    let head = take(&mut pos, 4)?;
                    let tag = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
                    match tag {
                        TAG_FP16 => {
                            let data = take(&mut pos, (n * 2).next_multiple_of(4))?;
                            TensorData { dtype: DType::F16, shape: vec![n], bytes: data[..n * 2].to_vec() }
                        }
                        0 | TAG_FP32_RAW => {
                            TensorData { dtype: DType::F32, shape: vec![n], bytes: take(&mut pos, n * 4)?.to_vec() }
                        }
                        TAG_INT8 => {
                            return Err(format!(
                                "{}: its {role} is int8-quantised (tag 0x{tag:08X}), which superres does not import",
                                l.describe()
                            ))
                        }
                        _ => {
                            // A 256-entry codebook, then one index per weight. The tag bytes are
                            // flags, not data, so the table starts after them.
                            let table = take(&mut pos, 256 * 4)?;
                            let idx = take(&mut pos, n.next_multiple_of(4))?;
                            let table: Vec<f32> = table
                                .chunks_exact(4)
                                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                                .collect();
                            let vals: Vec<f32> = idx[..n].iter().map(|&i| table[i as usize]).collect();
                            TensorData::from_f32(vec![n], &vals)
                        }
                    }
                }
            };
            l.blobs.push((role, t));
        }
    }
    if pos != bin.len() {
        return Err(format!(
            "{} bytes left after the last layer's weights: the .bin does not belong to this .param",
            bin.len() - pos
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAM: &str = "7767517\n4 4\nInput in 0 1 data 0=8 1=8 2=3\n\
        Convolution c1 1 1 data a 0=2 1=3 4=1 5=1 6=54 9=2 -23310=1,0.2\n\
        PReLU p1 1 1 a b 0=2\n\
        Eltwise e 2 1 b b out 0=1 -23301=2,0.2,1.0\n";

    fn bin(tag: u32, half: bool) -> Vec<u8> {
        let mut b = tag.to_le_bytes().to_vec();
        for i in 0..54 {
            let v = i as f32 * 0.5 - 3.0;
            if half {
                // Values k/2 are exact in half precision; encode by hand.
                b.extend_from_slice(&half_bits(v).to_le_bytes());
            } else {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        if half {
            b.resize(b.len().next_multiple_of(4), 0);
        }
        for v in [0.25f32, -0.5, 0.1, 0.2] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn half_bits(v: f32) -> u16 {
        // Exact for the small multiples of 0.5 used here.
        if v == 0.0 {
            return 0;
        }
        let sign = if v < 0.0 { 0x8000 } else { 0 };
        let a = v.abs();
        let e = a.log2().floor() as i32;
        let m = ((a / 2f32.powi(e) - 1.0) * 1024.0).round() as u16;
        sign | (((e + 15) as u16) << 10) | m
    }

    #[test]
    fn parses_params_and_reads_fp32_and_fp16_blobs() {
        let mut layers = parse_param(PARAM).unwrap();
        assert_eq!(layers.len(), 4);
        assert_eq!(layers[1].int(0, 0), 2);
        assert_eq!(layers[1].array(10), Some(&[0.2f32][..]));
        assert_eq!(layers[3].array(1), Some(&[0.2f32, 1.0][..]));
        assert_eq!(layers[3].inputs, ["b", "b"]);
        for (tag, half) in [(0, false), (TAG_FP32_RAW, false), (TAG_FP16, true)] {
            let mut ls = layers.clone();
            load_bin(&mut ls, &bin(tag, half)).unwrap();
            let w = ls[1].blob("weight").unwrap();
            assert_eq!(w.dtype, if half { DType::F16 } else { DType::F32 });
            let wv = w.to_f32().unwrap();
            assert_eq!(wv[0], -3.0);
            assert_eq!(wv[53], 23.5);
            assert_eq!(ls[1].blob("bias").unwrap().to_f32().unwrap(), [0.25, -0.5]);
            assert_eq!(ls[2].blob("slope").unwrap().to_f32().unwrap(), [0.1, 0.2]);
        }
        load_bin(&mut layers, &bin(0, false)).unwrap();
    }

    #[test]
    fn every_truncation_and_trailing_bytes_are_errors() {
        let layers = parse_param(PARAM).unwrap();
        for (tag, half) in [(0, false), (TAG_FP16, true)] {
            let full = bin(tag, half);
            for cut in 0..full.len() {
                let mut ls = layers.clone();
                let e = load_bin(&mut ls, &full[..cut]).unwrap_err();
                assert!(e.contains("ends inside") && (e.contains("'c1'") || e.contains("'p1'")), "{e}");
            }
            let mut long = full.clone();
            long.extend_from_slice(&[0; 8]);
            assert!(load_bin(&mut layers.clone(), &long).unwrap_err().contains("8 bytes left"));
        }
        let mut int8 = bin(TAG_INT8, false);
        int8.truncate(60);
        assert!(load_bin(&mut layers.clone(), &int8).unwrap_err().contains("int8"));
    }

    #[test]
    fn bad_param_text_is_explained() {
        for (text, want) in [
            ("", "first line"),
            ("7767518\n1 1\n", "first line"),
            ("7767517\n", "layer_count"),
            ("7767517\n2 2\nInput in 0 1 data\n", "header says 2 layers"),
            ("7767517\n1 1\nConvolution c 1 1 x\n", "not all listed"),
            ("7767517\n1 1\nInput in 0 1 d 0=x\n", "not an integer"),
            ("7767517\n1 1\nInput in 0 1 d 0=1.x\n", "not a number"),
            ("7767517\n1 1\nInput in 0 1 d -23300=3,1,2\n", "says 3 values"),
            ("7767517\n1 1\nInput in 0 1 d junk\n", "not key=value"),
            ("7767517\n1 1\nConvolution c 0 1 d 6=-5\n", ""),
        ] {
            match parse_param(text) {
                Err(e) => assert!(e.contains(want), "{text:?}: {e}"),
                Ok(mut l) => {
                    let e = load_bin(&mut l, &[]).unwrap_err();
                    assert!(e.contains("out of range"), "{e}");
                }
            }
        }
        let mut huge = parse_param("7767517\n1 1\nConvolution c 0 1 d 6=99999999999\n").unwrap();
        assert!(load_bin(&mut huge, &[0; 16]).unwrap_err().contains("out of range"));
    }

    #[test]
    fn codebook_weights() {
        let layers = parse_param("7767517\n1 1\nInnerProduct fc 0 1 d 0=1 1=0 2=5\n").unwrap();
        let mut b = vec![1u8, 0, 0, 0];
        for i in 0..256 {
            b.extend_from_slice(&(i as f32 * 0.5).to_le_bytes());
        }
        b.extend_from_slice(&[3, 0, 255, 1, 2, 0, 0, 0]);
        let mut ls = layers.clone();
        load_bin(&mut ls, &b).unwrap();
        assert_eq!(ls[0].blob("weight").unwrap().to_f32().unwrap(), [1.5, 0.0, 127.5, 0.5, 1.0]);
    }

    #[test]
    fn sniffing() {
        assert!(looks_like_param(b"7767517\n3 3\n"));
        assert!(looks_like_param(b"\xEF\xBB\xBF7767517\r\n"));
        assert!(!looks_like_param(b"77675170\n"));
        assert!(!looks_like_param(b"PK\x03\x04"));
    }
}
