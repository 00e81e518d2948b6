//! Architectures and their hyper-parameters, and how they are stored in a model file's
//! `__metadata__` (all values are strings, as safetensors requires).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;

/// Receptive-field radii of CUNet (input pixels), checked against the graph by the tests: the
/// pre-padding (18, 28) plus the reach of the down-sampling grid, since an output pixel's deepest
/// features cover a whole 2x2 (x2: UNet2 runs at twice the input resolution) or 4x4 block of input
/// pixels, wherever the pixel sits in it.
const CUNET_X2_RADIUS: usize = 19;
const CUNET_X1_RADIUS: usize = 31;

/// Version of the metadata schema written by `superres convert`.
pub const FORMAT_VERSION: u32 = 1;

/// Activation of SRVGGNetCompact (`act_type` in Real-ESRGAN).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SrvggAct {
    PRelu,
    Relu,
    LeakyRelu,
}

impl SrvggAct {
    fn name(self) -> &'static str {
        match self {
            SrvggAct::PRelu => "prelu",
            SrvggAct::Relu => "relu",
            SrvggAct::LeakyRelu => "leakyrelu",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "prelu" => SrvggAct::PRelu,
            "relu" => SrvggAct::Relu,
            "leakyrelu" => SrvggAct::LeakyRelu,
            _ => return None,
        })
    }
}

/// Real-ESRGAN's compact VGG-style network: conv + activation stack at low resolution, a
/// pixel-shuffle, and the nearest-upsampled input added back.
#[derive(Clone, Debug, PartialEq)]
pub struct Srvgg {
    pub num_feat: usize,
    pub num_conv: usize,
    pub scale: usize,
    pub act: SrvggAct,
}

/// Normalisation around a network that works in a shifted, scaled range: the network sees
/// `(x - mean)·range/std` for x in [0,1], and its output y maps back to `y·std/range + mean`
/// (BasicSR's `img_range`/`mean`, EDSR-PyTorch's `MeanShift` layers with `rgb_range`).
#[derive(Clone, Debug, PartialEq)]
pub struct MeanShift {
    pub range: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl MeanShift {
    /// DIV2K mean used by EDSR, MDSR and BasicSR.
    pub const DIV2K: MeanShift = MeanShift { range: 255.0, mean: [0.4488, 0.4371, 0.4040], std: [1.0; 3] };

    /// Per-channel `(scale, shift)` applied to [0,1] input.
    pub fn input_affine(&self) -> Vec<(f32, f32)> {
        (0..3).map(|c| (self.range / self.std[c], -self.range * self.mean[c] / self.std[c])).collect()
    }

    /// Per-channel `(scale, shift)` that maps network output back to [0,1].
    pub fn output_affine(&self) -> Vec<(f32, f32)> {
        (0..3).map(|c| (self.std[c] / self.range, self.mean[c])).collect()
    }
}

/// Which checkpoint layout the weights came from (informational; names are canonical inside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    BasicSr,
    EdsrPytorch,
    RealEsrgan,
    /// The model's own official code (TDAN).
    Official,
    /// The original ESRGAN repository (`model.0`, `model.1.sub.N.RDBk.convm.0`, ...).
    Esrgan,
    /// Imported from an ncnn `.param` + `.bin`.
    Ncnn,
    /// nunif's PyTorch waifu2x (`net.N`, `unet1.conv1.conv.0`, ...).
    Nunif,
    /// idealo image-super-resolution (Keras layer names).
    Idealo,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::BasicSr => "basicsr",
            Layout::EdsrPytorch => "edsr-pytorch",
            Layout::RealEsrgan => "real-esrgan",
            Layout::Official => "official",
            Layout::Esrgan => "esrgan",
            Layout::Ncnn => "ncnn",
            Layout::Nunif => "nunif",
            Layout::Idealo => "idealo",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "basicsr" => Layout::BasicSr,
            "edsr-pytorch" => Layout::EdsrPytorch,
            "real-esrgan" => Layout::RealEsrgan,
            "official" => Layout::Official,
            "esrgan" => Layout::Esrgan,
            "ncnn" => Layout::Ncnn,
            "nunif" => Layout::Nunif,
            "idealo" => Layout::Idealo,
            _ => return None,
        })
    }
}

/// EDSR (Lim et al. 2017): residual blocks without batch norm, a long skip, sub-pixel upsampling.
#[derive(Clone, Debug, PartialEq)]
pub struct Edsr {
    pub num_feat: usize,
    pub num_block: usize,
    pub scale: usize,
    pub res_scale: f32,
    pub norm: MeanShift,
}

/// MDSR: EDSR's body shared by several scales, with per-scale 5x5 pre-processing blocks and
/// per-scale upsamplers.
#[derive(Clone, Debug, PartialEq)]
pub struct Mdsr {
    pub num_feat: usize,
    pub num_block: usize,
    /// Scale of each `pre_process.i` / `upsample.i` branch, in index order.
    pub scales: Vec<usize>,
    pub res_scale: f32,
    pub norm: MeanShift,
}

/// RRDBNet (ESRGAN / Real-ESRGAN): residual-in-residual dense blocks, nearest x2 x2 upsampler;
/// x2 and x1 pixel-unshuffle the input first.
#[derive(Clone, Debug, PartialEq)]
pub struct Rrdb {
    pub num_feat: usize,
    pub num_block: usize,
    pub num_grow_ch: usize,
    pub scale: usize,
}

/// waifu2x UpConv7: six valid 3x3 convs and a 4x4 stride-2 transposed conv (always x2).
#[derive(Clone, Debug, PartialEq)]
pub struct UpConv7 {
    pub scale: usize,
}

/// waifu2x CUNet: two cascaded U-Nets with squeeze-and-excitation; x2 (UpCUNet) or x1 (denoise).
#[derive(Clone, Debug, PartialEq)]
pub struct Cunet {
    pub scale: usize,
}

/// How idealo's RDN upscales: `UPN3` to 3·s² channels, then nearest `UpSampling2D` and `SR` on
/// 3·s² channels (the released "ups" weights), or a pixel shuffle to 3 channels before `SR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RdnUpsampler {
    Nearest,
    Shuffle,
}

/// Residual dense network (Zhang et al. 2018) in idealo's layout: D dense blocks of C convs of G
/// filters on G0 features, global feature fusion, and an upsampler.
#[derive(Clone, Debug, PartialEq)]
pub struct Rdn {
    pub c: usize,
    pub d: usize,
    pub g: usize,
    pub g0: usize,
    pub scale: usize,
    pub upsampler: RdnUpsampler,
}

/// idealo's RRDN ("gans"): T residual-in-residual blocks of D dense blocks (C convs, ReLU),
/// residual scale `beta`, pixel shuffle.
#[derive(Clone, Debug, PartialEq)]
pub struct Rrdn {
    pub c: usize,
    pub d: usize,
    pub g: usize,
    pub g0: usize,
    pub t: usize,
    pub scale: usize,
    pub beta: f32,
}

/// EDVR (BasicSR layout): PCD alignment with modulated deformable convolutions, TSA fusion.
#[derive(Clone, Debug, PartialEq)]
pub struct Edvr {
    pub num_feat: usize,
    pub num_frame: usize,
    pub deformable_groups: usize,
    pub num_extract_block: usize,
    pub num_reconstruct_block: usize,
    pub center_frame_idx: usize,
    pub with_tsa: bool,
    pub with_predeblur: bool,
    /// HR input (the deblurring models): output size = input size.
    pub hr_in: bool,
}

/// TDAN (official layout): deformable alignment of each supporting frame, then reconstruction.
#[derive(Clone, Debug, PartialEq)]
pub struct Tdan {
    pub num_feat: usize,
    pub num_frame: usize,
    pub deformable_groups: usize,
    pub num_extract_block: usize,
    pub num_reconstruct_block: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Arch {
    Srvgg(Srvgg),
    Edsr(Edsr),
    Mdsr(Mdsr),
    Rrdb(Rrdb),
    UpConv7(UpConv7),
    Cunet(Cunet),
    Rdn(Rdn),
    Rrdn(Rrdn),
    Edvr(Edvr),
    Tdan(Tdan),
}

/// Names accepted by `--arch` and written as `arch` in metadata.
pub const ARCH_NAMES: &[&str] =
    &["srvgg", "edsr", "mdsr", "rrdb", "upconv7", "cunet", "rdn", "rrdn", "edvr", "tdan"];

impl Arch {
    pub fn name(&self) -> &'static str {
        match self {
            Arch::Srvgg(_) => "srvgg",
            Arch::Edsr(_) => "edsr",
            Arch::Mdsr(_) => "mdsr",
            Arch::Rrdb(_) => "rrdb",
            Arch::UpConv7(_) => "upconv7",
            Arch::Cunet(_) => "cunet",
            Arch::Rdn(_) => "rdn",
            Arch::Rrdn(_) => "rrdn",
            Arch::Edvr(_) => "edvr",
            Arch::Tdan(_) => "tdan",
        }
    }

    /// Whether the model works on windows of frames (`superres video`).
    pub fn is_video(&self) -> bool {
        matches!(self, Arch::Edvr(_) | Arch::Tdan(_))
    }

    /// Frames in a window (1 for single-image models).
    pub fn num_frames(&self) -> usize {
        match self {
            Arch::Edvr(a) => a.num_frame,
            Arch::Tdan(a) => a.num_frame,
            _ => 1,
        }
    }

    /// Scales the model can run at.
    pub fn scales(&self) -> Vec<usize> {
        match self {
            Arch::Srvgg(a) => vec![a.scale],
            Arch::Edsr(a) => vec![a.scale],
            Arch::Mdsr(a) => a.scales.clone(),
            Arch::Edvr(a) => vec![if a.hr_in { 1 } else { 4 }],
            Arch::Tdan(_) => vec![4],
            Arch::Rrdb(a) => vec![a.scale],
            Arch::UpConv7(a) => vec![a.scale],
            Arch::Cunet(a) => vec![a.scale],
            Arch::Rdn(a) => vec![a.scale],
            Arch::Rrdn(a) => vec![a.scale],
        }
    }

    /// Pick the scale to run: the requested one if the model has it, else its only scale.
    pub fn resolve_scale(&self, requested: Option<usize>) -> Result<usize> {
        let scales = self.scales();
        match requested {
            Some(s) if scales.contains(&s) => Ok(s),
            Some(s) => Err(Error::Model(format!(
                "this {} model has no x{s} scale (available: {})",
                self.name(),
                scales.iter().map(|s| format!("x{s}")).collect::<Vec<_>>().join(", ")
            ))),
            None if scales.len() == 1 => Ok(scales[0]),
            None => Err(Error::Model(format!(
                "this {} model has several scales ({}): choose one with --scale",
                self.name(),
                scales.iter().map(|s| format!("x{s}")).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Radius of the receptive field in input pixels at `scale` (see `Graph::receptive_field`);
    /// `None` when unbounded (deformable convolutions sample wherever their offsets point).
    pub fn receptive_field(&self, scale: usize) -> Option<usize> {
        // Back-propagate a radius through the upsampler: conv at HR adds 1, each pixel shuffle by
        // r divides (rounding up).
        fn upsampler(after: usize, scale: usize) -> usize {
            let mut r = after;
            let stages: Vec<usize> =
                if scale == 3 { vec![3] } else { vec![2; scale.trailing_zeros() as usize] };
            for f in stages {
                r = r.div_ceil(f) + 1;
            }
            r
        }
        Some(match self {
            Arch::Srvgg(a) => a.num_conv + 2,
            Arch::Edsr(a) => upsampler(1, scale) + 1 + 2 * a.num_block + 1,
            Arch::Mdsr(a) => upsampler(1, scale) + 1 + 2 * a.num_block + 2 * 4 + 1,
            // 15 convs per RRDB, conv_first and conv_body, and 2 more at the low resolution
            // from the nearest x2 x2 upsampler with its 4 convs; the x2/x1 models see the input
            // pixel-unshuffled by 2/4, which multiplies the radius.
            Arch::Rrdb(a) => (15 * a.num_block + 4) * (4 / a.scale),
            // Valid convolutions: the receptive field is the pre-padding (7 for UpConv7; for
            // CUNet more, see CUNET_X2_RADIUS).
            Arch::UpConv7(_) => 7,
            Arch::Cunet(a) => {
                if a.scale == 2 {
                    CUNET_X2_RADIUS
                } else {
                    CUNET_X1_RADIUS
                }
            }
            // F_m1, F_0, C 3x3 convs per block, GFF_2, UPN1 (5x5: 2), UPN2, UPN3, then SR at the
            // output resolution (one more low-resolution pixel after the upsampling).
            Arch::Rdn(a) => 2 + a.c * a.d + 1 + 2 + 1 + 1 + 1,
            // Pre_blocks_conv, C + 1 3x3 convs per dense block, post_blocks_conv, PreShuffle, SR.
            Arch::Rrdn(a) => 1 + a.t * a.d * (a.c + 1) + 1 + 1 + 1,
            Arch::Edvr(_) | Arch::Tdan(_) => return None,
        })
    }

    /// Hyper-parameters as metadata strings (arch, scale and format version included).
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("format", "superres".into());
        put("format_version", FORMAT_VERSION.to_string());
        put("arch", self.name().into());
        match self {
            Arch::Srvgg(a) => {
                put("scale", a.scale.to_string());
                put("num_feat", a.num_feat.to_string());
                put("num_conv", a.num_conv.to_string());
                put("act", a.act.name().into());
            }
            Arch::Edsr(a) => {
                put("scale", a.scale.to_string());
                put("num_feat", a.num_feat.to_string());
                put("num_block", a.num_block.to_string());
                put("res_scale", a.res_scale.to_string());
                put_norm(&mut m, &a.norm);
            }
            Arch::Mdsr(a) => {
                put("scales", join(&a.scales));
                put("num_feat", a.num_feat.to_string());
                put("num_block", a.num_block.to_string());
                put("res_scale", a.res_scale.to_string());
                put_norm(&mut m, &a.norm);
            }
            Arch::Edvr(a) => {
                put("scale", self.scales()[0].to_string());
                put("num_feat", a.num_feat.to_string());
                put("num_frame", a.num_frame.to_string());
                put("deformable_groups", a.deformable_groups.to_string());
                put("num_extract_block", a.num_extract_block.to_string());
                put("num_reconstruct_block", a.num_reconstruct_block.to_string());
                put("center_frame_idx", a.center_frame_idx.to_string());
                put("with_tsa", a.with_tsa.to_string());
                put("with_predeblur", a.with_predeblur.to_string());
                put("hr_in", a.hr_in.to_string());
            }
            Arch::Tdan(a) => {
                put("scale", "4".into());
                put("num_feat", a.num_feat.to_string());
                put("num_frame", a.num_frame.to_string());
                put("deformable_groups", a.deformable_groups.to_string());
                put("num_extract_block", a.num_extract_block.to_string());
                put("num_reconstruct_block", a.num_reconstruct_block.to_string());
            }
            Arch::Rrdb(a) => {
                put("scale", a.scale.to_string());
                put("num_feat", a.num_feat.to_string());
                put("num_block", a.num_block.to_string());
                put("num_grow_ch", a.num_grow_ch.to_string());
            }
            Arch::UpConv7(a) => put("scale", a.scale.to_string()),
            Arch::Cunet(a) => put("scale", a.scale.to_string()),
            Arch::Rdn(a) => {
                put("scale", a.scale.to_string());
                put("C", a.c.to_string());
                put("D", a.d.to_string());
                put("G", a.g.to_string());
                put("G0", a.g0.to_string());
                put(
                    "upsampler",
                    (if a.upsampler == RdnUpsampler::Nearest { "nearest" } else { "shuffle" }).into(),
                );
            }
            Arch::Rrdn(a) => {
                put("scale", a.scale.to_string());
                put("C", a.c.to_string());
                put("D", a.d.to_string());
                put("G", a.g.to_string());
                put("G0", a.g0.to_string());
                put("T", a.t.to_string());
                put("beta", a.beta.to_string());
            }
        }
        m
    }

    /// Parse metadata written by [`Arch::to_metadata`]; `None` when there is no `arch` key (a
    /// foreign safetensors file, which is then detected from its tensors).
    pub fn from_metadata(m: &BTreeMap<String, String>) -> Result<Option<Arch>, String> {
        let Some(arch) = m.get("arch") else { return Ok(None) };
        if let Some(v) = m.get("format_version") {
            let v: u32 = v.parse().map_err(|_| format!("bad format_version '{v}'"))?;
            if v > FORMAT_VERSION {
                return Err(format!(
                    "model format version {v} is newer than this build supports ({FORMAT_VERSION}); upgrade superres"
                ));
            }
        }
        let get = |k: &str| m.get(k).ok_or_else(|| format!("metadata lacks '{k}' for arch {arch}"));
        let num = |k: &str| -> Result<usize, String> {
            get(k)?.parse().map_err(|_| format!("metadata '{k}' is not a whole number"))
        };
        let float = |k: &str| -> Result<f32, String> {
            get(k)?.parse().map_err(|_| format!("metadata '{k}' is not a number"))
        };
        let flag = |k: &str| -> Result<bool, String> {
            get(k)?.parse().map_err(|_| format!("metadata '{k}' must be true or false"))
        };
        Ok(Some(match arch.as_str() {
            "srvgg" => Arch::Srvgg(Srvgg {
                num_feat: num("num_feat")?,
                num_conv: num("num_conv")?,
                scale: num("scale")?,
                act: SrvggAct::parse(get("act")?).ok_or("metadata 'act' must be prelu, relu or leakyrelu")?,
            }),
            "edsr" => Arch::Edsr(Edsr {
                num_feat: num("num_feat")?,
                num_block: num("num_block")?,
                scale: num("scale")?,
                res_scale: float("res_scale")?,
                norm: get_norm(m)?,
            }),
            "mdsr" => Arch::Mdsr(Mdsr {
                num_feat: num("num_feat")?,
                num_block: num("num_block")?,
                scales: parse_list(get("scales")?)?,
                res_scale: float("res_scale")?,
                norm: get_norm(m)?,
            }),
            "edvr" => Arch::Edvr(Edvr {
                num_feat: num("num_feat")?,
                num_frame: num("num_frame")?,
                deformable_groups: num("deformable_groups")?,
                num_extract_block: num("num_extract_block")?,
                num_reconstruct_block: num("num_reconstruct_block")?,
                center_frame_idx: num("center_frame_idx")?,
                with_tsa: flag("with_tsa")?,
                with_predeblur: flag("with_predeblur")?,
                hr_in: flag("hr_in")?,
            }),
            "tdan" => Arch::Tdan(Tdan {
                num_feat: num("num_feat")?,
                num_frame: num("num_frame")?,
                deformable_groups: num("deformable_groups")?,
                num_extract_block: num("num_extract_block")?,
                num_reconstruct_block: num("num_reconstruct_block")?,
            }),
            "rrdb" => Arch::Rrdb(Rrdb {
                num_feat: num("num_feat")?,
                num_block: num("num_block")?,
                num_grow_ch: num("num_grow_ch")?,
                scale: num("scale")?,
            }),
            "upconv7" => Arch::UpConv7(UpConv7 { scale: num("scale")? }),
            "cunet" => Arch::Cunet(Cunet { scale: num("scale")? }),
            "rdn" => Arch::Rdn(Rdn {
                c: num("C")?,
                d: num("D")?,
                g: num("G")?,
                g0: num("G0")?,
                scale: num("scale")?,
                upsampler: match get("upsampler")?.as_str() {
                    "nearest" => RdnUpsampler::Nearest,
                    "shuffle" => RdnUpsampler::Shuffle,
                    _ => return Err("metadata 'upsampler' must be nearest or shuffle".into()),
                },
            }),
            "rrdn" => Arch::Rrdn(Rrdn {
                c: num("C")?,
                d: num("D")?,
                g: num("G")?,
                g0: num("G0")?,
                t: num("T")?,
                scale: num("scale")?,
                beta: float("beta")?,
            }),
            other => {
                return Err(format!("unknown architecture '{other}' (known: {})", ARCH_NAMES.join(", ")))
            }
        }))
    }

    /// Apply a `--param key=value` override.
    pub fn set_param(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |what: &str| Error::Usage(format!("--param {key}={value}: {what}"));
        let float = || value.parse::<f32>().map_err(|_| bad("not a number"));
        match (self, key) {
            (Arch::Edsr(Edsr { res_scale, .. }) | Arch::Mdsr(Mdsr { res_scale, .. }), "res_scale") => {
                *res_scale = float()?
            }
            (Arch::Edsr(Edsr { norm, .. }) | Arch::Mdsr(Mdsr { norm, .. }), "img_range" | "rgb_range") => {
                norm.range = float()?
            }
            (Arch::Edsr(Edsr { norm, .. }) | Arch::Mdsr(Mdsr { norm, .. }), "rgb_mean") => {
                norm.mean = parse_triple(value).map_err(|e| bad(&e))?
            }
            (Arch::Edsr(Edsr { norm, .. }) | Arch::Mdsr(Mdsr { norm, .. }), "rgb_std") => {
                norm.std = parse_triple(value).map_err(|e| bad(&e))?
            }
            (Arch::Edvr(a), "center_frame_idx") => {
                let c: usize = value.parse().map_err(|_| bad("not a frame index"))?;
                if c >= a.num_frame {
                    return Err(bad(&format!("the window has {} frames", a.num_frame)));
                }
                a.center_frame_idx = c;
            }
            (Arch::Rrdn(a), "beta") => a.beta = float()?,
            (Arch::Srvgg(a), "act") => {
                let act = SrvggAct::parse(value).ok_or_else(|| bad("expected prelu, relu or leakyrelu"))?;
                if (act == SrvggAct::PRelu) != (a.act == SrvggAct::PRelu) {
                    return Err(bad("PReLU needs slope tensors: only relu <-> leakyrelu can be switched"));
                }
                a.act = act;
            }
            (arch, _) => {
                return Err(Error::Usage(format!(
                    "--param {key}: not a parameter of {} (settable: {})",
                    arch.name(),
                    arch.settable_params().join(", ")
                )))
            }
        }
        Ok(())
    }

    pub fn settable_params(&self) -> &'static [&'static str] {
        match self {
            Arch::Srvgg(_) => &["act"],
            Arch::Edsr(_) | Arch::Mdsr(_) => &["res_scale", "img_range", "rgb_mean", "rgb_std"],
            Arch::Edvr(_) => &["center_frame_idx"],
            Arch::Tdan(_) => &[],
            Arch::Rrdn(_) => &["beta"],
            Arch::Rrdb(_) | Arch::UpConv7(_) | Arch::Cunet(_) | Arch::Rdn(_) => &[],
        }
    }

    /// Parse `--arch` values into the name we dispatch on.
    pub fn check_name(name: &str) -> Result<&'static str> {
        ARCH_NAMES.iter().copied().find(|n| *n == name).ok_or_else(|| {
            Error::Usage(format!("unknown --arch '{name}' (supported: {})", ARCH_NAMES.join(", ")))
        })
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::Srvgg(a) => write!(
                f,
                "SRVGGNetCompact x{} ({} features, {} convs, {})",
                a.scale,
                a.num_feat,
                a.num_conv,
                a.act.name()
            ),
            Arch::Edsr(a) => write!(
                f,
                "EDSR x{} ({} features, {} blocks, res_scale {})",
                a.scale, a.num_feat, a.num_block, a.res_scale
            ),
            Arch::Mdsr(a) => write!(
                f,
                "MDSR x{} ({} features, {} blocks, res_scale {})",
                join(&a.scales).replace(',', "/x"),
                a.num_feat,
                a.num_block,
                a.res_scale
            ),
            Arch::Edvr(a) => write!(
                f,
                "EDVR x{} ({} features, {} frames, {} extract / {} reconstruct blocks, {} deformable groups{}{}{})",
                self.scales()[0],
                a.num_feat,
                a.num_frame,
                a.num_extract_block,
                a.num_reconstruct_block,
                a.deformable_groups,
                if a.with_tsa { ", TSA" } else { ", no TSA" },
                if a.with_predeblur { ", pre-deblur" } else { "" },
                if a.hr_in { ", HR input" } else { "" }
            ),
            Arch::Tdan(a) => write!(
                f,
                "TDAN x4 ({} features, {} frames, {} extract / {} reconstruct blocks, {} deformable groups)",
                a.num_feat, a.num_frame, a.num_extract_block, a.num_reconstruct_block, a.deformable_groups
            ),
            Arch::Rrdb(a) => write!(
                f,
                "RRDBNet x{} ({} features, {} RRDB blocks, growth {})",
                a.scale, a.num_feat, a.num_block, a.num_grow_ch
            ),
            Arch::UpConv7(a) => {
                write!(f, "waifu2x UpConv7 x{} (6 valid convs + 4x4 transposed conv)", a.scale)
            }
            Arch::Cunet(a) => write!(f, "waifu2x CUNet x{} (two U-Nets with squeeze-excitation)", a.scale),
            Arch::Rdn(a) => write!(
                f,
                "RDN x{} (C={}, D={}, G={}, G0={}, {} upsampling)",
                a.scale,
                a.c,
                a.d,
                a.g,
                a.g0,
                if a.upsampler == RdnUpsampler::Nearest { "nearest" } else { "pixel-shuffle" }
            ),
            Arch::Rrdn(a) => write!(
                f,
                "RRDN x{} (C={}, D={}, G={}, G0={}, T={}, beta {})",
                a.scale, a.c, a.d, a.g, a.g0, a.t, a.beta
            ),
        }
    }
}

/// Parse a layout name stored in metadata.
pub fn parse_layout(s: &str) -> Option<Layout> {
    Layout::parse(s)
}

fn join(v: &[usize]) -> String {
    v.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")
}

fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    let v: Option<Vec<usize>> = s.split(',').map(|t| t.trim().parse().ok()).collect();
    v.filter(|v| !v.is_empty()).ok_or_else(|| format!("'{s}' is not a list of whole numbers"))
}

fn parse_triple(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> =
        s.split(',').map(|t| t.trim().parse::<f32>()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    v.try_into().map_err(|_| format!("'{s}' must be three comma-separated numbers"))
}

fn put_norm(m: &mut BTreeMap<String, String>, n: &MeanShift) {
    let triple = |v: &[f32; 3]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    m.insert("img_range".into(), n.range.to_string());
    m.insert("rgb_mean".into(), triple(&n.mean));
    m.insert("rgb_std".into(), triple(&n.std));
}

fn get_norm(m: &BTreeMap<String, String>) -> Result<MeanShift, String> {
    let mut n = MeanShift::DIV2K;
    if let Some(r) = m.get("img_range") {
        n.range = r.parse().map_err(|_| "metadata 'img_range' is not a number")?;
    }
    if let Some(v) = m.get("rgb_mean") {
        n.mean = parse_triple(v)?;
    }
    if let Some(v) = m.get("rgb_std") {
        n.std = parse_triple(v)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trip() {
        let archs = [
            Arch::Srvgg(Srvgg { num_feat: 64, num_conv: 16, scale: 4, act: SrvggAct::PRelu }),
            Arch::Edsr(Edsr {
                num_feat: 256,
                num_block: 32,
                scale: 3,
                res_scale: 0.1,
                norm: MeanShift::DIV2K,
            }),
            Arch::Mdsr(Mdsr {
                num_feat: 64,
                num_block: 80,
                scales: vec![2, 3, 4],
                res_scale: 1.0,
                norm: MeanShift { range: 1.0, mean: [0.5, 0.25, 0.125], std: [1.0, 2.0, 0.5] },
            }),
            Arch::Edvr(Edvr {
                num_feat: 128,
                num_frame: 5,
                deformable_groups: 8,
                num_extract_block: 5,
                num_reconstruct_block: 40,
                center_frame_idx: 2,
                with_tsa: true,
                with_predeblur: true,
                hr_in: false,
            }),
            Arch::Tdan(Tdan {
                num_feat: 64,
                num_frame: 5,
                deformable_groups: 8,
                num_extract_block: 5,
                num_reconstruct_block: 10,
            }),
            Arch::Rrdb(Rrdb { num_feat: 64, num_block: 23, num_grow_ch: 32, scale: 2 }),
            Arch::UpConv7(UpConv7 { scale: 2 }),
            Arch::Cunet(Cunet { scale: 1 }),
            Arch::Rdn(Rdn { c: 3, d: 10, g: 64, g0: 64, scale: 2, upsampler: RdnUpsampler::Nearest }),
            Arch::Rrdn(Rrdn { c: 4, d: 3, g: 32, g0: 32, t: 10, scale: 4, beta: 0.2 }),
        ];
        for a in archs {
            assert_eq!(Arch::from_metadata(&a.to_metadata()).unwrap(), Some(a.clone()));
        }
    }

    #[test]
    fn newer_format_is_refused() {
        let mut m =
            Arch::Srvgg(Srvgg { num_feat: 8, num_conv: 1, scale: 2, act: SrvggAct::Relu }).to_metadata();
        m.insert("format_version".into(), "99".into());
        assert!(Arch::from_metadata(&m).unwrap_err().contains("newer"));
    }

    #[test]
    fn params() {
        let mut a =
            Arch::Edsr(Edsr { num_feat: 8, num_block: 1, scale: 2, res_scale: 1.0, norm: MeanShift::DIV2K });
        a.set_param("res_scale", "0.1").unwrap();
        assert!(matches!(&a, Arch::Edsr(e) if e.res_scale == 0.1));
        assert!(a.set_param("num_conv", "3").is_err());
        assert!(a.set_param("res_scale", "x").is_err());
        assert!(a.resolve_scale(Some(3)).is_err());
        assert_eq!(a.resolve_scale(None).unwrap(), 2);
    }
}
