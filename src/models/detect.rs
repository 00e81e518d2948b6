//! Architecture detection from tensor names and shapes (spandrel-style), with hyper-parameters
//! read off the shapes. Every layout we support has a few signature keys; when none matches, the
//! error lists them so the user can see what was expected.

use super::arch::{
    Arch, Cunet, Edsr, Edvr, Layout, Mdsr, MeanShift, Rdn, RdnUpsampler, Rrdb, Rrdn, Srvgg, SrvggAct, Tdan,
    UpConv7,
};
use super::build::upsampler_scale_ok;
use super::source::TensorSource;
use std::collections::BTreeMap;

/// What detection found.
#[derive(Clone, Debug)]
pub struct Detected {
    pub arch: Arch,
    pub layout: Layout,
    /// Canonical name -> stored name, for layouts stored under other names.
    pub rename: BTreeMap<String, String>,
    /// Assumptions made (defaults for hyper-parameters the checkpoint does not store).
    pub notes: Vec<String>,
}

/// One line per supported layout: what its signature keys are.
pub const SUPPORTED: &[&str] = &[
    "srvgg (Real-ESRGAN SRVGGNetCompact): body.0.weight [F,3,3,3], body.1.weight [F] (PReLU), ..., last body.N conv [3*s*s,F,3,3]",
    "edsr (BasicSR): conv_first.weight, body.0.conv1.weight, conv_after_body.weight, upsample.0.weight, conv_last.weight",
    "edsr (EDSR-PyTorch): sub_mean.weight, head.0.weight, body.0.body.0.weight, tail.0.0.weight, tail.1.weight",
    "mdsr (EDSR-PyTorch): head.0.weight, pre_process.0.0.body.0.weight, body.0.body.0.weight, upsample.0.0.weight, tail.0.weight",
    "rrdb (BasicSR / Real-ESRGAN RRDBNet): conv_first.weight [F,3|12|48,3,3], body.0.rdb1.conv1.weight [G,F,3,3], conv_body.weight, conv_up1.weight, conv_up2.weight, conv_hr.weight, conv_last.weight",
    "rrdb (original ESRGAN): model.0.weight, model.1.sub.0.RDB1.conv1.0.weight, model.3.weight, model.6.weight, model.8.weight, model.10.weight",
    "upconv7 (waifu2x, nunif): net.0.weight [16,3,3,3], net.2 .. net.10 (valid 3x3 convs), net.12.weight [256,3,4,4] (transposed conv)",
    "cunet (waifu2x, nunif): unet1.conv1.conv.0.weight, unet1.conv2.seblock.conv1.weight, unet1.conv_bottom.weight [64,3,4,4] (x2) or [3,64,3,3] (x1), unet2.conv5.weight",
    "rdn (idealo, converted by tools/convert_keras.py): F_m1.weight, F_0.weight, F_1_1.weight, LFF_1.weight [G0,G0+C*G,1,1], GFF_1.weight, UPN3.weight [3*s*s,32,3,3], SR.weight",
    "rrdn (idealo, converted by tools/convert_keras.py): Pre_blocks_conv.weight, F_1_1_1.weight, LFF_1_1.weight, post_blocks_conv.weight, PreShuffle.weight [3*s*s,G0,3,3], SR.weight",
    "edvr (BasicSR): conv_first.weight or predeblur.*, feature_extraction.N.conv1.weight, pcd_align.*.dcn_pack.l1.conv_offset.weight, pcd_align.cas_dcnpack.weight, fusion.*, reconstruction.N.conv1.weight",
    "tdan (official TDAN_VSR, state dict or whole pickled module): conv_first, residual_layer.N.conv1, cr, off2d_1, dconv_1, ..., recon_lr, fea_ex.0, recon_layer.N.conv1, up.0.0, up.1",
    "ncnn .param + .bin of any of these (realesr-animevideov3, realesrgan-x4plus, waifu2x upconv_7 / cunet)",
];

struct Keys<'a> {
    shapes: BTreeMap<&'a str, &'a [usize]>,
}

impl<'a> Keys<'a> {
    fn shape(&self, k: &str) -> Option<&'a [usize]> {
        self.shapes.get(k).copied()
    }
    fn has(&self, k: &str) -> bool {
        self.shapes.contains_key(k)
    }
    /// Output channels of a conv weight `[o, i, k, k]`.
    fn conv_out(&self, k: &str) -> Option<usize> {
        self.shape(k).filter(|s| s.len() == 4).map(|s| s[0])
    }
    /// Count consecutive indices `i` from 0 for which `fmt(i)` exists.
    fn count(&self, fmt: impl Fn(usize) -> String) -> usize {
        (0..).take_while(|&i| self.has(&fmt(i))).count()
    }
}

/// Scale of a sub-pixel upsampler whose convs are `{prefix}.{0,2,..}.weight` on `f` features.
fn upsampler_scale(k: &Keys, prefix: &str, f: usize) -> Result<usize, String> {
    let first = format!("{prefix}.0.weight");
    let out = k.conv_out(&first).ok_or_else(|| format!("no upsampler conv '{first}'"))?;
    if out == 9 * f {
        return Ok(3);
    }
    if out != 4 * f {
        return Err(format!(
            "'{first}' has {out} output channels; a sub-pixel upsampler on {f} features has {} or {}",
            4 * f,
            9 * f
        ));
    }
    let stages = k.count(|i| format!("{prefix}.{}.weight", 2 * i));
    Ok(1 << stages)
}

/// Detect from the source's entries; `hint` restricts to one architecture name.
pub fn detect(src: &TensorSource, hint: Option<&str>) -> Result<Detected, String> {
    let entries = src.entries();
    let keys = Keys { shapes: entries.iter().map(|(n, s, _)| (n.as_str(), s.as_slice())).collect() };
    let candidates: Vec<(&str, fn(&TensorSource, &Keys) -> Option<Result<Detected, String>>)> = vec![
        ("edvr", detect_edvr),
        ("tdan", detect_tdan),
        ("mdsr", detect_mdsr),
        ("edsr", detect_edsr_basicsr),
        ("edsr", detect_edsr_pytorch),
        ("srvgg", detect_srvgg),
        ("rrdb", detect_rrdb),
        ("rrdb", detect_esrgan),
        ("upconv7", detect_upconv7),
        ("cunet", detect_cunet),
        ("rdn", detect_rdn),
        ("rrdn", detect_rrdn),
    ];
    for (name, f) in candidates {
        if hint.is_some_and(|h| h != name) {
            continue;
        }
        if let Some(r) = f(src, &keys) {
            return r;
        }
    }
    let first: Vec<String> = entries.iter().take(8).map(|(n, s, _)| format!("{n} {s:?}")).collect();
    Err(format!(
        "could not recognise the architecture{}. Supported layouts:\n  {}\nfirst tensors in this file:\n  {}",
        hint.map(|h| format!(" as '{h}'")).unwrap_or_default(),
        SUPPORTED.join("\n  "),
        if first.is_empty() { "(none)".to_string() } else { first.join("\n  ") }
    ))
}

fn detect_srvgg(_: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    let s0 = k.shape("body.0.weight")?;
    if s0.len() != 4 || s0[1] != 3 || k.has("conv_first.weight") {
        return None;
    }
    Some((|| {
        let f = s0[0];
        let act = match k.shape("body.1.weight") {
            Some(s) if s == [f] => SrvggAct::PRelu,
            Some(s) => {
                return Err(format!("body.1.weight has shape {s:?}; a PReLU on {f} features has [{f}]"))
            }
            None => SrvggAct::Relu,
        };
        // Convs sit at even indices; the last one maps F -> 3·s².
        let n_convs = k.count(|i| format!("body.{}.weight", 2 * i));
        if n_convs < 2 {
            return Err("SRVGGNetCompact needs at least a first and a last conv".into());
        }
        let last = format!("body.{}.weight", 2 * (n_convs - 1));
        let out = k.conv_out(&last).ok_or_else(|| format!("{last} is not a conv weight"))?;
        let scale = (1..=16)
            .find(|s| 3 * s * s == out)
            .ok_or_else(|| format!("{last} has {out} output channels, not 3·s² for an integer scale s"))?;
        let mut notes = Vec::new();
        if act == SrvggAct::Relu {
            notes.push(
                "no activation weights: assuming ReLU (use --param act=leakyrelu for LeakyReLU models)"
                    .into(),
            );
        }
        Ok(Detected {
            arch: Arch::Srvgg(Srvgg { num_feat: f, num_conv: n_convs - 2, scale, act }),
            layout: Layout::RealEsrgan,
            rename: BTreeMap::new(),
            notes,
        })
    })())
}

fn default_res_scale(f: usize, notes: &mut Vec<String>) -> f32 {
    // The checkpoint does not store res_scale: EDSR uses 0.1 for the 256-wide EDSR-L only.
    let r = if f >= 256 { 0.1 } else { 1.0 };
    notes.push(format!("res_scale not stored in the checkpoint: using {r}, EDSR's default for {f} features (override with --param res_scale=...)"));
    r
}

fn detect_edsr_basicsr(_: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !(k.has("conv_first.weight") && k.has("body.0.conv1.weight") && k.has("conv_after_body.weight")) {
        return None;
    }
    Some((|| {
        let f = k.conv_out("conv_first.weight").ok_or("conv_first.weight is not a conv")?;
        let num_block = k.count(|i| format!("body.{i}.conv1.weight"));
        let scale = upsampler_scale(k, "upsample", f)?;
        let mut notes = vec![format!(
            "mean shift not stored in BasicSR checkpoints: using img_range 255 and the DIV2K mean {:?}",
            MeanShift::DIV2K.mean
        )];
        let res_scale = default_res_scale(f, &mut notes);
        Ok(Detected {
            arch: Arch::Edsr(Edsr { num_feat: f, num_block, scale, res_scale, norm: MeanShift::DIV2K }),
            layout: Layout::BasicSr,
            rename: BTreeMap::new(),
            notes,
        })
    })())
}

/// Read EDSR-PyTorch's `MeanShift` 1x1 convs (weight eye/std, bias -range·mean/std). The range
/// (255 or 1) is not stored; the bias magnitude tells them apart (|range·mean| is ~100 vs ~0.4).
fn mean_shift(src: &TensorSource, prefix: &str, notes: &mut Vec<String>) -> Result<MeanShift, String> {
    let (Ok(w), Ok(b)) = (src.f32(&format!("{prefix}.weight")), src.f32(&format!("{prefix}.bias"))) else {
        notes.push(format!("{prefix} not in the checkpoint: using rgb_range 255 and the DIV2K mean"));
        return Ok(MeanShift::DIV2K);
    };
    if w.len() != 9 || b.len() != 3 {
        return Err(format!("{prefix} should be a 3x3x1x1 conv with 3 biases"));
    }
    let mut std = [1.0f32; 3];
    let mut scaled_mean = [0.0f32; 3];
    for c in 0..3 {
        let d = w[c * 3 + c];
        if d == 0.0 || !d.is_finite() {
            return Err(format!("{prefix}.weight has a zero or non-finite diagonal"));
        }
        std[c] = 1.0 / d;
        scaled_mean[c] = -b[c] * std[c];
    }
    let range = if scaled_mean.iter().any(|m| m.abs() > 2.0) { 255.0 } else { 1.0 };
    notes.push(format!("rgb_range {range} inferred from {prefix}.bias"));
    Ok(MeanShift { range, mean: scaled_mean.map(|m| m / range), std })
}

fn detect_edsr_pytorch(src: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !(k.has("head.0.weight") && k.has("body.0.body.0.weight") && k.has("tail.0.0.weight"))
        || k.has("pre_process.0.0.body.0.weight")
    {
        return None;
    }
    Some((|| {
        let f = k.conv_out("head.0.weight").ok_or("head.0.weight is not a conv")?;
        let num_block = k.count(|i| format!("body.{i}.body.0.weight"));
        let scale = upsampler_scale(k, "tail.0", f)?;
        let mut notes = Vec::new();
        let norm = mean_shift(src, "sub_mean", &mut notes)?;
        let res_scale = default_res_scale(f, &mut notes);
        let mut rename = BTreeMap::new();
        let mut map = |canon: String, stored: String| {
            for sfx in ["weight", "bias"] {
                rename.insert(format!("{canon}.{sfx}"), format!("{stored}.{sfx}"));
            }
        };
        map("conv_first".into(), "head.0".into());
        for i in 0..num_block {
            map(format!("body.{i}.conv1"), format!("body.{i}.body.0"));
            map(format!("body.{i}.conv2"), format!("body.{i}.body.2"));
        }
        map("conv_after_body".into(), format!("body.{num_block}"));
        let stages = if scale == 3 { 1 } else { scale.trailing_zeros() as usize };
        for s in 0..stages {
            map(format!("upsample.{}", 2 * s), format!("tail.0.{}", 2 * s));
        }
        map("conv_last".into(), "tail.1".into());
        Ok(Detected {
            arch: Arch::Edsr(Edsr { num_feat: f, num_block, scale, res_scale, norm }),
            layout: Layout::EdsrPytorch,
            rename,
            notes,
        })
    })())
}

fn detect_mdsr(src: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !(k.has("head.0.weight") && k.has("pre_process.0.0.body.0.weight")) {
        return None;
    }
    Some((|| {
        let f = k.conv_out("head.0.weight").ok_or("head.0.weight is not a conv")?;
        let num_block = k.count(|i| format!("body.{i}.body.0.weight"));
        let branches = k.count(|i| format!("pre_process.{i}.0.body.0.weight"));
        let scales: Vec<usize> = (0..branches)
            .map(|i| upsampler_scale(k, &format!("upsample.{i}"), f))
            .collect::<Result<_, _>>()?;
        let mut notes = Vec::new();
        let norm = mean_shift(src, "sub_mean", &mut notes)?;
        Ok(Detected {
            arch: Arch::Mdsr(Mdsr { num_feat: f, num_block, scales, res_scale: 1.0, norm }),
            layout: Layout::EdsrPytorch,
            rename: BTreeMap::new(),
            notes,
        })
    })())
}

/// RRDBNet hyper-parameters from canonical-named shapes (after renaming).
fn rrdb_from(k: &Keys, name: &dyn Fn(&str) -> String) -> Result<Rrdb, String> {
    let first = name("conv_first.weight");
    let s =
        k.shape(&first).filter(|s| s.len() == 4).ok_or_else(|| format!("{first} is not a conv weight"))?;
    let (f, cin) = (s[0], s[1]);
    let scale = match cin {
        3 => 4,
        12 => 2,
        48 => 1,
        _ => {
            return Err(format!(
                "{first} reads {cin} channels: RRDBNet reads 3 (x4), 12 (x2, pixel-unshuffled by 2) or 48 (x1, by 4)"
            ))
        }
    };
    let num_block = k.count(|i| name(&format!("body.{i}.rdb1.conv1.weight")));
    if num_block == 0 {
        return Err("no RRDB blocks (body.0.rdb1.conv1.weight)".into());
    }
    let grow =
        k.conv_out(&name("body.0.rdb1.conv1.weight")).ok_or("body.0.rdb1.conv1.weight is not a conv")?;
    for up in ["conv_up1.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.weight"] {
        if !k.has(&name(up)) {
            return Err(format!(
                "RRDBNet without {} (only the x4 upsampler of BasicSR is supported)",
                name(up)
            ));
        }
    }
    if k.has(&name("conv_up3.weight")) {
        return Err("RRDBNet with conv_up3 (an x8 upsampler) is not supported".into());
    }
    Ok(Rrdb { num_feat: f, num_block, num_grow_ch: grow, scale })
}

fn detect_rrdb(_: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !(k.has("conv_first.weight") && k.has("body.0.rdb1.conv1.weight")) {
        return None;
    }
    Some(rrdb_from(k, &|n| n.to_string()).map(|arch| Detected {
        arch: Arch::Rrdb(arch),
        layout: Layout::BasicSr,
        rename: BTreeMap::new(),
        notes: Vec::new(),
    }))
}

/// The original ESRGAN repository's `RRDB_Net` (a `Sequential` named `model`).
fn detect_esrgan(_: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !(k.has("model.0.weight") && k.has("model.1.sub.0.RDB1.conv1.0.weight")) {
        return None;
    }
    let n = k.count(|i| format!("model.1.sub.{i}.RDB1.conv1.0.weight"));
    let mut rename = BTreeMap::new();
    let mut map = |canon: String, stored: String| {
        for sfx in ["weight", "bias"] {
            rename.insert(format!("{canon}.{sfx}"), format!("{stored}.{sfx}"));
        }
    };
    map("conv_first".into(), "model.0".into());
    for i in 0..n {
        for r in 1..=3 {
            for c in 1..=5 {
                map(format!("body.{i}.rdb{r}.conv{c}"), format!("model.1.sub.{i}.RDB{r}.conv{c}.0"));
            }
        }
    }
    map("conv_body".into(), format!("model.1.sub.{n}"));
    map("conv_up1".into(), "model.3".into());
    map("conv_up2".into(), "model.6".into());
    map("conv_hr".into(), "model.8".into());
    map("conv_last".into(), "model.10".into());
    let lookup = |c: &str| rename.get(c).cloned().unwrap_or_else(|| c.to_string());
    Some(rrdb_from(k, &lookup).map(|arch| Detected {
        arch: Arch::Rrdb(arch),
        layout: Layout::Esrgan,
        rename: rename.clone(),
        notes: Vec::new(),
    }))
}

fn detect_upconv7(_: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !(k.has("net.0.weight") && k.has("net.12.weight")) {
        return None;
    }
    Some(match k.shape("net.12.weight") {
        Some([_, 3, 4, 4]) => Ok(Detected {
            arch: Arch::UpConv7(UpConv7 { scale: 2 }),
            layout: Layout::Nunif,
            rename: BTreeMap::new(),
            notes: Vec::new(),
        }),
        s => Err(format!("net.12.weight has shape {s:?}; UpConv7's transposed conv is [C,3,4,4]")),
    })
}

fn detect_cunet(_: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !(k.has("unet1.conv1.conv.0.weight") && k.has("unet2.conv1.conv.0.weight")) {
        return None;
    }
    let scale = match k.shape("unet1.conv_bottom.weight") {
        Some([_, 3, 4, 4]) => 2,
        Some([3, _, 3, 3]) => 1,
        s => {
            return Some(Err(format!(
                "unet1.conv_bottom.weight has shape {s:?}: [64,3,4,4] (x2, transposed conv) or [3,64,3,3] (x1) expected"
            )))
        }
    };
    Some(Ok(Detected {
        arch: Arch::Cunet(Cunet { scale }),
        layout: Layout::Nunif,
        rename: BTreeMap::new(),
        notes: Vec::new(),
    }))
}

/// `s` for a conv with `3·s²` outputs.
fn rgb_scale(k: &Keys, name: &str) -> Result<usize, String> {
    let out = k.conv_out(name).ok_or_else(|| format!("{name} is missing or not a conv weight"))?;
    (1..=8)
        .find(|s| 3 * s * s == out)
        .ok_or_else(|| format!("{name} has {out} outputs, not 3·s² for a scale s"))
}

fn detect_rdn(_: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !(k.has("F_m1.weight") && k.has("F_1_1.weight") && k.has("GFF_1.weight")) {
        return None;
    }
    Some((|| {
        let g0 = k.conv_out("F_m1.weight").ok_or("F_m1.weight is not a conv")?;
        let g = k.conv_out("F_1_1.weight").ok_or("F_1_1.weight is not a conv")?;
        let c = k.count(|i| format!("F_1_{}.weight", i + 1));
        let d = k.count(|i| format!("F_{}_1.weight", i + 1));
        let scale = rgb_scale(k, "UPN3.weight")?;
        let upsampler = match k.shape("SR.weight") {
            Some([3, i, 3, 3]) if *i == 3 * scale * scale && scale > 1 => RdnUpsampler::Nearest,
            Some([3, 3, 3, 3]) => RdnUpsampler::Shuffle,
            s => {
                return Err(format!(
                    "SR.weight has shape {s:?}: [3,3*s*s,3,3] (nearest) or [3,3,3,3] (shuffle)"
                ))
            }
        };
        Ok(Detected {
            arch: Arch::Rdn(Rdn { c, d, g, g0, scale, upsampler }),
            layout: Layout::Idealo,
            rename: BTreeMap::new(),
            notes: Vec::new(),
        })
    })())
}

fn detect_rrdn(_: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !(k.has("Pre_blocks_conv.weight") && k.has("F_1_1_1.weight")) {
        return None;
    }
    Some((|| {
        let g0 = k.conv_out("Pre_blocks_conv.weight").ok_or("Pre_blocks_conv.weight is not a conv")?;
        let g = k.conv_out("F_1_1_1.weight").ok_or("F_1_1_1.weight is not a conv")?;
        let c = k.count(|i| format!("F_1_1_{}.weight", i + 1));
        let d = k.count(|i| format!("F_1_{}_1.weight", i + 1));
        let t = k.count(|i| format!("F_{}_1_1.weight", i + 1));
        let scale = rgb_scale(k, "PreShuffle.weight")?;
        Ok(Detected {
            arch: Arch::Rrdn(Rrdn { c, d, g, g0, t, scale, beta: 0.2 }),
            layout: Layout::Idealo,
            rename: BTreeMap::new(),
            notes: vec!["beta (the residual scale) is not stored: using idealo's 0.2 (override with --param beta=...)".into()],
        })
    })())
}

fn detect_edvr(_: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !k.has("pcd_align.cas_dcnpack.weight") {
        return None;
    }
    Some((|| {
        let f =
            k.conv_out("pcd_align.cas_dcnpack.weight").ok_or("pcd_align.cas_dcnpack.weight is not a conv")?;
        let with_predeblur = k.has("predeblur.conv_first.weight");
        let hr_in = k.has("predeblur.stride_conv_hr1.weight");
        let with_tsa = k.has("fusion.temporal_attn1.weight");
        let fusion = if with_tsa { "fusion.feat_fusion.weight" } else { "fusion.weight" };
        let fin = k
            .shape(fusion)
            .filter(|s| s.len() == 4)
            .map(|s| s[1])
            .ok_or_else(|| format!("no fusion conv '{fusion}'"))?;
        if fin % f != 0 {
            return Err(format!("{fusion} reads {fin} channels, not a multiple of {f} features"));
        }
        let offs = k
            .conv_out("pcd_align.dcn_pack.l1.conv_offset.weight")
            .ok_or("no pcd_align.dcn_pack.l1.conv_offset")?;
        if offs % 27 != 0 {
            return Err(format!("pcd_align.dcn_pack.l1.conv_offset has {offs} outputs, not 3·9·groups"));
        }
        let num_frame = fin / f;
        let notes = vec![format!("centre frame index {} (num_frame // 2, as BasicSR)", num_frame / 2)];
        Ok(Detected {
            arch: Arch::Edvr(Edvr {
                num_feat: f,
                num_frame,
                deformable_groups: offs / 27,
                num_extract_block: k.count(|i| format!("feature_extraction.{i}.conv1.weight")),
                num_reconstruct_block: k.count(|i| format!("reconstruction.{i}.conv1.weight")),
                center_frame_idx: num_frame / 2,
                with_tsa,
                with_predeblur,
                hr_in,
            }),
            layout: Layout::BasicSr,
            rename: BTreeMap::new(),
            notes,
        })
    })())
}

fn detect_tdan(_: &TensorSource, k: &Keys) -> Option<Result<Detected, String>> {
    if !(k.has("off2d_1.weight") && k.has("dconv_1.weight") && k.has("recon_lr.weight")) {
        return None;
    }
    Some((|| {
        let f = k.conv_out("conv_first.weight").ok_or("no conv_first conv")?;
        let offs = k.conv_out("off2d_1.weight").ok_or("off2d_1.weight is not a conv")?;
        if offs % 18 != 0 {
            return Err(format!("off2d_1 has {offs} outputs, not 2·9·groups"));
        }
        let fin =
            k.shape("fea_ex.0.weight").filter(|s| s.len() == 4).map(|s| s[1]).ok_or("no fea_ex.0 conv")?;
        if fin % 3 != 0 {
            return Err(format!("fea_ex.0 reads {fin} channels, not 3 per frame"));
        }
        Ok(Detected {
            arch: Arch::Tdan(Tdan {
                num_feat: f,
                num_frame: fin / 3,
                deformable_groups: offs / 18,
                num_extract_block: k.count(|i| format!("residual_layer.{i}.conv1.weight")),
                num_reconstruct_block: k.count(|i| format!("recon_layer.{i}.conv1.weight")),
            }),
            layout: Layout::Official,
            rename: BTreeMap::new(),
            notes: Vec::new(),
        })
    })())
}

/// Check hyper-parameters that builders rely on.
pub(crate) fn validate(arch: &Arch) -> Result<(), String> {
    let scales = arch.scales();
    match arch {
        Arch::Srvgg(a) if a.num_feat == 0 || a.scale == 0 => Err("SRVGG with zero features or scale".into()),
        Arch::Edsr(a) if a.num_feat == 0 => Err("EDSR with zero features".into()),
        Arch::Mdsr(a) if a.num_feat == 0 || a.scales.is_empty() => {
            Err("MDSR with no features or scales".into())
        }
        Arch::Rrdb(a) if a.num_feat == 0 || a.num_grow_ch == 0 || ![1, 2, 4].contains(&a.scale) => {
            Err(format!("RRDBNet needs features, growth and a scale of 1, 2 or 4 (got x{})", a.scale))
        }
        Arch::UpConv7(a) if a.scale != 2 => Err("UpConv7 is always x2".into()),
        Arch::Rdn(a) if a.c == 0 || a.d == 0 || a.g == 0 || a.g0 == 0 || a.scale == 0 => {
            Err("RDN needs C, D, G, G0 and a scale".into())
        }
        Arch::Rrdn(a) if a.c == 0 || a.d == 0 || a.g == 0 || a.g0 == 0 || a.scale == 0 => {
            Err("RRDN needs C, D, G, G0 and a scale".into())
        }
        Arch::Cunet(a) if a.scale != 1 && a.scale != 2 => Err("CUNet is x1 or x2".into()),
        Arch::Edsr(_) | Arch::Mdsr(_) if scales.iter().any(|&s| !upsampler_scale_ok(s)) => {
            Err(format!("unsupported upsampling scale in {scales:?} (2^n or 3)"))
        }
        Arch::Edvr(a)
            if a.num_feat == 0
                || a.num_frame == 0
                || a.deformable_groups == 0
                || a.num_feat % a.deformable_groups != 0 =>
        {
            Err(format!(
                "EDVR with {} features, {} frames, {} deformable groups",
                a.num_feat, a.num_frame, a.deformable_groups
            ))
        }
        Arch::Edvr(a) if a.center_frame_idx >= a.num_frame => {
            Err("EDVR centre frame outside the window".into())
        }
        Arch::Tdan(a)
            if a.num_feat == 0
                || a.num_frame < 2
                || a.deformable_groups == 0
                || a.num_feat % a.deformable_groups != 0 =>
        {
            Err(format!(
                "TDAN with {} features, {} frames, {} deformable groups",
                a.num_feat, a.num_frame, a.deformable_groups
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::source::Store;
    use crate::weights::{DType, StateDict, TensorData};
    use std::path::Path;

    /// A state dict with the given shapes and no data: detection reads shapes only.
    fn shapes(entries: &[(String, Vec<usize>)]) -> TensorSource {
        let sd = StateDict {
            tensors: entries
                .iter()
                .map(|(n, s)| {
                    (n.clone(), TensorData { dtype: DType::F32, shape: s.clone(), bytes: Vec::new() })
                })
                .collect(),
            extras: Default::default(),
        };
        TensorSource::new(Path::new("mem"), Store::Memory(sd))
    }

    fn conv(name: &str, o: usize, i: usize, k: usize) -> Vec<(String, Vec<usize>)> {
        vec![(format!("{name}.weight"), vec![o, i, k, k]), (format!("{name}.bias"), vec![o])]
    }

    fn edsr_basicsr(f: usize, blocks: usize, scale: usize) -> Vec<(String, Vec<usize>)> {
        let mut v = conv("conv_first", f, 3, 3);
        for i in 0..blocks {
            v.extend(conv(&format!("body.{i}.conv1"), f, f, 3));
            v.extend(conv(&format!("body.{i}.conv2"), f, f, 3));
        }
        v.extend(conv("conv_after_body", f, f, 3));
        if scale == 3 {
            v.extend(conv("upsample.0", 9 * f, f, 3));
        } else {
            for s in 0..scale.trailing_zeros() as usize {
                v.extend(conv(&format!("upsample.{}", 2 * s), 4 * f, f, 3));
            }
        }
        v.extend(conv("conv_last", 3, f, 3));
        v
    }

    #[test]
    fn edsr_sizes_scales_and_default_res_scale() {
        for (f, blocks, scale, res) in
            [(64, 16, 2, 1.0), (64, 16, 3, 1.0), (256, 32, 4, 0.1), (256, 32, 2, 0.1)]
        {
            let d = detect(&shapes(&edsr_basicsr(f, blocks, scale)), None).unwrap();
            let Arch::Edsr(e) = d.arch else { panic!("not EDSR") };
            assert_eq!((e.num_feat, e.num_block, e.scale, e.res_scale), (f, blocks, scale, res));
            assert_eq!(d.layout, Layout::BasicSr);
        }
    }

    #[test]
    fn edsr_pytorch_names_are_renamed() {
        let (f, nb) = (16, 2);
        let mut v = conv("head.0", f, 3, 3);
        for i in 0..nb {
            v.extend(conv(&format!("body.{i}.body.0"), f, f, 3));
            v.extend(conv(&format!("body.{i}.body.2"), f, f, 3));
        }
        v.extend(conv(&format!("body.{nb}"), f, f, 3));
        v.extend(conv("tail.0.0", 4 * f, f, 3));
        v.extend(conv("tail.0.2", 4 * f, f, 3));
        v.extend(conv("tail.1", 3, f, 3));
        let d = detect(&shapes(&v), None).unwrap();
        assert!(matches!(&d.arch, Arch::Edsr(e) if e.scale == 4 && e.num_block == 2));
        assert_eq!(d.layout, Layout::EdsrPytorch);
        assert_eq!(d.rename["conv_after_body.weight"], "body.2.weight");
        assert_eq!(d.rename["upsample.2.bias"], "tail.0.2.bias");
        assert_eq!(d.rename["conv_last.weight"], "tail.1.weight");
    }

    #[test]
    fn srvgg_and_mdsr() {
        let mut v = conv("body.0", 32, 3, 3);
        v.push(("body.1.weight".into(), vec![32]));
        for i in 1..=4 {
            v.extend(conv(&format!("body.{}", 2 * i), 32, 32, 3));
            v.push((format!("body.{}.weight", 2 * i + 1), vec![32]));
        }
        v.extend(conv("body.10", 27, 32, 3));
        let d = detect(&shapes(&v), None).unwrap();
        assert_eq!(d.arch, Arch::Srvgg(Srvgg { num_feat: 32, num_conv: 4, scale: 3, act: SrvggAct::PRelu }));

        let f = 8;
        let mut m = conv("head.0", f, 3, 3);
        for i in 0..3 {
            for b in 0..2 {
                m.extend(conv(&format!("pre_process.{i}.{b}.body.0"), f, f, 5));
                m.extend(conv(&format!("pre_process.{i}.{b}.body.2"), f, f, 5));
            }
        }
        m.extend(conv("body.0.body.0", f, f, 3));
        m.extend(conv("body.0.body.2", f, f, 3));
        m.extend(conv("body.1", f, f, 3));
        m.extend(conv("upsample.0.0", 4 * f, f, 3));
        m.extend(conv("upsample.1.0", 9 * f, f, 3));
        m.extend(conv("upsample.2.0", 4 * f, f, 3));
        m.extend(conv("upsample.2.2", 4 * f, f, 3));
        m.extend(conv("tail.0", 3, f, 3));
        let d = detect(&shapes(&m), None).unwrap();
        assert!(matches!(&d.arch, Arch::Mdsr(a) if a.scales == [2, 3, 4] && a.num_block == 1));
    }

    #[test]
    fn unknown_or_inconsistent_weights_are_explained() {
        let e = detect(&shapes(&conv("encoder.layer", 4, 3, 3)), None).unwrap_err();
        assert!(e.contains("Supported layouts") && e.contains("encoder.layer.weight"), "{e}");
        let e = detect(&shapes(&edsr_basicsr(8, 1, 2)), Some("srvgg")).unwrap_err();
        assert!(e.contains("as 'srvgg'"), "{e}");
        let mut bad = edsr_basicsr(8, 1, 2);
        bad.retain(|(n, _)| !n.starts_with("upsample"));
        bad.extend(conv("upsample.0", 5 * 8, 8, 3));
        assert!(detect(&shapes(&bad), None).unwrap_err().contains("sub-pixel upsampler"));
    }
}
