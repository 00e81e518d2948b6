//! Mapping an ncnn graph onto our architectures. ncnn's `.bin` has no tensor names, so the
//! importer recognises the architecture from the layer types present, then walks the weight
//! layers (Convolution, Deconvolution, InnerProduct, PReLU) in file order, which for every model
//! we support is the forward order of the canonical names. Each layer's kind, kernel geometry and
//! fused activation are checked against what the architecture computes, and its weights are laid
//! out in PyTorch order under the canonical name (ncnn stores transposed-convolution weights
//! output-major; PyTorch input-major). Detection then runs on the result like on any checkpoint.

use super::waifu2x::{cunet_layers, upconv7_layers, LayerKind};
use crate::error::{Error, Result};
use crate::weights::ncnn::{Layer, Model as NcnnModel};
use crate::weights::{DType, StateDict, TensorData};

/// Layer types the importer understands (anything else is reported by name).
const KNOWN: &[&str] = &[
    "Input",
    "Split",
    "Convolution",
    "Deconvolution",
    "PReLU",
    "PixelShuffle",
    "Interp",
    "BinaryOp",
    "Eltwise",
    "Concat",
    "Crop",
    "Pooling",
    "InnerProduct",
    "Scale",
];

/// The result of an import: canonical tensors, parameters the weights cannot carry, notes.
pub(crate) struct Imported {
    pub state: StateDict,
    pub params: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// The activation fused into a layer (ncnn `9=activation_type`, `10=[params]`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    None,
    Relu,
    Leaky(f32),
    Sigmoid,
    Other(i64),
}

fn act_of(l: &Layer) -> Act {
    match l.int(9, 0) {
        0 => Act::None,
        1 => Act::Relu,
        2 => Act::Leaky(l.array(10).and_then(|a| a.first().copied()).unwrap_or(0.0)),
        4 => Act::Sigmoid,
        t => Act::Other(t),
    }
}

/// What one canonical weight layer must look like.
struct Expect {
    name: String,
    kind: LayerKind,
    k: usize,
    stride: usize,
    pad: usize,
    act: Act,
}

pub(crate) fn import(m: &NcnnModel) -> Result<Imported> {
    let fail = |reason: String| Error::format(&m.param_path, reason);
    for l in &m.layers {
        if !KNOWN.contains(&l.kind.as_str()) {
            return Err(fail(format!(
                "{}: ncnn layer type '{}' is not supported by the importer (supported: {})",
                l.describe(),
                l.kind,
                KNOWN.join(", ")
            )));
        }
    }
    let count = |t: &str| m.layers.iter().filter(|l| l.kind == t).count();
    let weights: Vec<&Layer> = m
        .layers
        .iter()
        .filter(|l| matches!(l.kind.as_str(), "Convolution" | "Deconvolution" | "InnerProduct" | "PReLU"))
        .collect();
    let mut notes =
        vec![format!("imported from ncnn: {} + {}", file_name(&m.param_path), file_name(&m.bin_path))];
    let fp16 = weights.iter().filter(|l| l.blob("weight").is_some_and(|t| t.dtype == DType::F16)).count();
    if fp16 > 0 {
        notes.push(format!("{fp16} weight tensors are stored in fp16 and widened exactly to fp32"));
    }
    let mut params = Vec::new();
    let expects: Vec<Expect> = if count("PixelShuffle") > 0 {
        srvgg_expects(m, &weights, &mut params).map_err(fail)?
    } else if count("Pooling") > 0 && count("InnerProduct") > 0 {
        let scale = match count("Deconvolution") {
            4 => 2,
            3 => 1,
            n => {
                return Err(fail(format!(
                    "a CUNet graph has 3 (x1) or 4 (x2) Deconvolution layers, this one {n}"
                )))
            }
        };
        let crops: Vec<(i64, i64)> =
            m.layers.iter().filter(|l| l.kind == "Crop").map(|l| (l.int(0, 0), l.int(1, 0))).collect();
        if crops != [(4, 4), (4, 4), (16, 16), (20, 20)] {
            return Err(fail(format!(
                "CUNet crops skips by 4, 4, 16 and 20 pixels; this graph by {crops:?}"
            )));
        }
        cunet_expects(scale)
    } else if count("Deconvolution") > 0 {
        upconv7_layers()
            .into_iter()
            .map(|(name, kind)| {
                let last = kind == LayerKind::Deconv;
                Expect {
                    name,
                    kind,
                    k: if last { 4 } else { 3 },
                    stride: if last { 2 } else { 1 },
                    pad: if last { 3 } else { 0 },
                    act: if last { Act::None } else { Act::Leaky(0.1) },
                }
            })
            .collect()
    } else if count("Concat") > 0 && count("Interp") > 0 {
        rrdb_expects(m, &weights).map_err(fail)?
    } else {
        let mut types: Vec<&str> = m.layers.iter().map(|l| l.kind.as_str()).collect();
        types.sort();
        types.dedup();
        return Err(fail(format!(
            "this ncnn graph (layer types {}) matches none of the architectures superres imports from ncnn: \
             SRVGGNetCompact (Convolution/PReLU/PixelShuffle), RRDBNet (Convolution/Concat/Eltwise/Interp), \
             waifu2x UpConv7 (6 Convolution + Deconvolution) and CUNet (with Pooling/InnerProduct/Scale)",
            types.join(", ")
        )));
    };
    if expects.len() != weights.len() {
        return Err(fail(format!(
            "the graph has {} weight layers where the recognised architecture has {}",
            weights.len(),
            expects.len()
        )));
    }
    let mut state = StateDict::default();
    for (l, e) in weights.iter().zip(&expects) {
        convert(l, e, &mut state).map_err(fail)?;
    }
    Ok(Imported { state, params, notes })
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn srvgg_expects(
    m: &NcnnModel,
    w: &[&Layer],
    params: &mut Vec<(String, String)>,
) -> Result<Vec<Expect>, String> {
    let prelu = w.iter().any(|l| l.kind == "PReLU");
    let convs = w.iter().filter(|l| l.kind == "Convolution").count();
    if convs < 2 {
        return Err("an SRVGGNetCompact graph needs at least two convolutions".into());
    }
    let first_act = w.first().map(|l| act_of(l)).unwrap_or(Act::None);
    let act = if prelu {
        Act::None
    } else {
        match first_act {
            Act::Relu => {
                params.push(("act".into(), "relu".into()));
                Act::Relu
            }
            Act::Leaky(0.1) => {
                params.push(("act".into(), "leakyrelu".into()));
                Act::Leaky(0.1)
            }
            a => return Err(format!("SRVGGNetCompact with activation {a:?} is not supported")),
        }
    };
    let shuffle = m.layers.iter().find(|l| l.kind == "PixelShuffle").map_or(0, |l| l.int(0, 0));
    let mut v = Vec::new();
    for i in 0..convs {
        let last = i + 1 == convs;
        v.push(Expect {
            name: format!("body.{}", 2 * i),
            kind: LayerKind::Conv,
            k: 3,
            stride: 1,
            pad: 1,
            act: if last { Act::None } else { act },
        });
        if prelu && !last {
            v.push(Expect {
                name: format!("body.{}", 2 * i + 1),
                kind: LayerKind::Fc,
                k: 0,
                stride: 0,
                pad: 0,
                act: Act::None,
            });
        }
    }
    if let Some(l) = w.iter().rev().find(|l| l.kind == "Convolution") {
        let out = l.int(0, 0);
        if shuffle.checked_mul(shuffle).and_then(|v| v.checked_mul(3)) != Some(out) {
            return Err(format!("{} has {out} outputs for a PixelShuffle by {shuffle}", l.describe()));
        }
    }
    Ok(v)
}

fn rrdb_expects(m: &NcnnModel, w: &[&Layer]) -> Result<Vec<Expect>, String> {
    let n = w.len();
    if w.iter().any(|l| l.kind != "Convolution") || n < 21 || !(n - 6).is_multiple_of(15) {
        return Err(format!(
            "an RRDBNet graph has 6 + 15·N convolutions and nothing else with weights; this one has {n} weight layers"
        ));
    }
    let blocks = (n - 6) / 15;
    let betas =
        m.layers.iter().filter(|l| l.kind == "Eltwise" && l.array(1) == Some(&[0.2, 1.0][..])).count();
    if betas != 4 * blocks {
        return Err(format!(
            "RRDBNet adds x + 0.2·y {} times for {blocks} blocks; this graph has {betas} such Eltwise layers",
            4 * blocks
        ));
    }
    let conv = |name: String, act: Act| Expect { name, kind: LayerKind::Conv, k: 3, stride: 1, pad: 1, act };
    let lrelu = Act::Leaky(0.2);
    let mut v = vec![conv("conv_first".into(), Act::None)];
    for i in 0..blocks {
        for r in 1..=3 {
            for c in 1..=5 {
                v.push(conv(format!("body.{i}.rdb{r}.conv{c}"), if c < 5 { lrelu } else { Act::None }));
            }
        }
    }
    v.push(conv("conv_body".into(), Act::None));
    for name in ["conv_up1", "conv_up2", "conv_hr"] {
        v.push(conv(name.into(), lrelu));
    }
    v.push(conv("conv_last".into(), Act::None));
    Ok(v)
}

fn cunet_expects(scale: usize) -> Vec<Expect> {
    cunet_layers(scale)
        .into_iter()
        .map(|(name, kind)| {
            let bottom = name.ends_with("conv_bottom");
            let (k, stride, pad) = match kind {
                LayerKind::Deconv if bottom => (4, 2, 3),
                LayerKind::Deconv => (2, 2, 0),
                LayerKind::Conv if name.ends_with("_down") => (2, 2, 0),
                LayerKind::Conv => (3, 1, 0),
                LayerKind::Fc => (1, 1, 0),
            };
            let act = if bottom {
                Act::None
            } else if name.ends_with("seblock.conv1") {
                Act::Relu
            } else if name.ends_with("seblock.conv2") {
                Act::Sigmoid
            } else {
                Act::Leaky(0.1)
            };
            Expect { name, kind, k, stride, pad, act }
        })
        .collect()
}

/// Check one weight layer against its expectation and store its tensors in PyTorch layout.
fn convert(l: &Layer, e: &Expect, sd: &mut StateDict) -> Result<(), String> {
    let want_kind = match e.kind {
        LayerKind::Conv => "Convolution",
        LayerKind::Deconv => "Deconvolution",
        // SE blocks are InnerProduct layers; a bare per-channel vector (PReLU) uses Fc with k 0.
        LayerKind::Fc if e.k == 0 => "PReLU",
        LayerKind::Fc => "InnerProduct",
    };
    if l.kind != want_kind {
        return Err(format!("{}: expected a {want_kind} for '{}' here", l.describe(), e.name));
    }
    if l.kind == "PReLU" {
        let s = l.blob("slope").ok_or_else(|| format!("{}: no slopes", l.describe()))?;
        sd.tensors.push((format!("{}.weight", e.name), s.clone()));
        return Ok(());
    }
    let act = act_of(l);
    if act != e.act {
        return Err(format!("{}: fused activation {act:?} where '{}' has {:?}", l.describe(), e.name, e.act));
    }
    let out = usize::try_from(l.int(0, 0))
        .ok()
        .filter(|&o| o <= 1 << 20)
        .ok_or_else(|| format!("{}: num_output {} is out of range", l.describe(), l.int(0, 0)))?;
    let w = l.blob("weight").ok_or_else(|| format!("{}: no weights", l.describe()))?;
    let n = w.numel();
    let bias = match l.blob("bias") {
        Some(b) => b.clone(),
        None => TensorData::from_f32(vec![out], &vec![0.0; out]),
    };
    let (shape, data) = if l.kind == "InnerProduct" {
        if out == 0 || n % out != 0 {
            return Err(format!("{}: {n} weights for {out} outputs", l.describe()));
        }
        (vec![out, n / out, 1, 1], w.bytes.clone())
    } else {
        let k = l.int(1, 0);
        let geometry =
            (l.int(11, k), l.int(2, 1), l.int(12, l.int(2, 1)), l.int(3, 1), l.int(13, l.int(3, 1)));
        let (kh, dil, dil_h, stride, stride_h) = geometry;
        let pad = l.int(4, 0);
        let pads = [l.int(14, pad), l.int(15, pad), l.int(16, l.int(14, pad))];
        if k as usize != e.k
            || kh != k
            || dil != 1
            || dil_h != 1
            || stride as usize != e.stride
            || stride_h != stride
        {
            return Err(format!(
                "{}: kernel {k}x{kh}, stride {stride}x{stride_h}, dilation {dil}x{dil_h} where '{}' is {}x{} with stride {}",
                l.describe(),
                e.name,
                e.k,
                e.k,
                e.stride
            ));
        }
        if pad as usize != e.pad || pads.iter().any(|&p| p != pad) {
            return Err(format!("{}: padding {pad} {pads:?} where '{}' has {}", l.describe(), e.name, e.pad));
        }
        if l.kind == "Deconvolution" && (l.int(18, 0) != 0 || l.int(19, 0) != 0 || l.int(20, 0) > 0) {
            return Err(format!("{}: output padding is not supported", l.describe()));
        }
        let k = k as usize;
        let per_input = out.checked_mul(k * k).filter(|&v| v > 0);
        if per_input.is_none_or(|v| n % v != 0) {
            return Err(format!("{}: {n} weights do not fill {out} outputs of {k}x{k}", l.describe()));
        }
        let cin = n / (out * k * k);
        if l.kind == "Deconvolution" {
            // ncnn: [out][in][k][k]; PyTorch ConvTranspose2d: [in][out][k][k].
            let es = w.dtype.size();
            let plane = k * k * es;
            let mut t = vec![0u8; w.bytes.len()];
            for o in 0..out {
                for i in 0..cin {
                    let src = (o * cin + i) * plane;
                    let dst = (i * out + o) * plane;
                    t[dst..dst + plane].copy_from_slice(&w.bytes[src..src + plane]);
                }
            }
            (vec![cin, out, k, k], t)
        } else {
            (vec![out, cin, k, k], w.bytes.clone())
        }
    };
    if bias.numel() != out {
        return Err(format!("{}: {} biases for {out} outputs", l.describe(), bias.numel()));
    }
    sd.tensors.push((format!("{}.weight", e.name), TensorData { dtype: w.dtype, shape, bytes: data }));
    sd.tensors.push((format!("{}.bias", e.name), TensorData { shape: vec![out], ..bias }));
    Ok(())
}
