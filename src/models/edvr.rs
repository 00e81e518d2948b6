//! EDVR (Wang et al. 2019) in the BasicSR layout: per-frame feature extraction with a three-level
//! pyramid (`conv_first` or the pre-deblur module, `feature_extraction`, `conv_l2_*`, `conv_l3_*`),
//! PCD alignment of every frame to the centre frame with modulated deformable convolutions
//! (`pcd_align.*`, torchvision's border rule), TSA fusion (`fusion.*`) or a 1x1 fusion conv,
//! `reconstruction` blocks, two x2 pixel-shuffle stages, and the bilinear x4 of the centre frame
//! added to the output (the centre frame itself for the HR-input deblurring variants).
//!
//! Split for streaming: the frame graph turns one frame into its three pyramid levels, computed
//! once per frame; the window graph aligns, fuses and reconstructs one output frame from the
//! cached levels of the frames in its window.

use super::arch::Edvr;
use super::build::Builder;
use crate::error::Result;
use crate::graph::ValueId;
use crate::kernels::conv::{Conv2d, ConvSpec};
use crate::kernels::deform::BorderRule;
use crate::kernels::gemm::Activation;
use crate::kernels::sample::PoolKind;

const LRELU: Activation = Activation::LeakyRelu(0.1);

fn strided(cin: usize, cout: usize) -> ConvSpec {
    ConvSpec { cin, cout, kh: 3, kw: 3, stride: 2, pad: 1 }
}

/// `PredeblurModule`: a small U-shaped residual network at L1 resolution (after two stride-2
/// convs for HR input).
fn predeblur(b: &mut Builder, x: ValueId, f: usize, hr_in: bool) -> Result<ValueId> {
    let mut l1 = b.conv(x, "predeblur.conv_first", f, 3, LRELU)?;
    if hr_in {
        l1 = b.conv_spec(l1, "predeblur.stride_conv_hr1", strided(f, f), LRELU)?;
        l1 = b.conv_spec(l1, "predeblur.stride_conv_hr2", strided(f, f), LRELU)?;
    }
    let l2 = b.conv_spec(l1, "predeblur.stride_conv_l2", strided(f, f), LRELU)?;
    let l3 = b.conv_spec(l2, "predeblur.stride_conv_l3", strided(f, f), LRELU)?;
    let l3 = b.res_block(l3, "predeblur.resblock_l3.conv1", "predeblur.resblock_l3.conv2", 3, 1.0)?;
    let l3 = b.graph.upsample_bilinear(l3, 2, 1.0);
    let l2 = b.res_block(l2, "predeblur.resblock_l2_1.conv1", "predeblur.resblock_l2_1.conv2", 3, 1.0)?;
    let l2 = b.graph.add(l2, l3);
    let l2 = b.res_block(l2, "predeblur.resblock_l2_2.conv1", "predeblur.resblock_l2_2.conv2", 3, 1.0)?;
    let l2 = b.graph.upsample_bilinear(l2, 2, 1.0);
    for i in 0..2 {
        l1 = b.res_block(
            l1,
            &format!("predeblur.resblock_l1.{i}.conv1"),
            &format!("predeblur.resblock_l1.{i}.conv2"),
            3,
            1.0,
        )?;
    }
    l1 = b.graph.add(l1, l2);
    for i in 2..5 {
        l1 = b.res_block(
            l1,
            &format!("predeblur.resblock_l1.{i}.conv1"),
            &format!("predeblur.resblock_l1.{i}.conv2"),
            3,
            1.0,
        )?;
    }
    Ok(l1)
}

/// Frame graph: normalised frame -> [L1, L2, L3] features.
pub(crate) fn build_frame(b: &mut Builder, a: &Edvr) -> Result<()> {
    let f = a.num_feat;
    let x = b.graph.input();
    let mut l1 = if a.with_predeblur {
        let p = predeblur(b, x, f, a.hr_in)?;
        b.conv(p, "conv_1x1", f, 1, Activation::None)?
    } else {
        b.conv(x, "conv_first", f, 3, LRELU)?
    };
    for i in 0..a.num_extract_block {
        l1 = b.res_block(
            l1,
            &format!("feature_extraction.{i}.conv1"),
            &format!("feature_extraction.{i}.conv2"),
            3,
            1.0,
        )?;
    }
    let l2 = b.conv_spec(l1, "conv_l2_1", strided(f, f), LRELU)?;
    let l2 = b.conv(l2, "conv_l2_2", f, 3, LRELU)?;
    let l3 = b.conv_spec(l2, "conv_l3_1", strided(f, f), LRELU)?;
    let l3 = b.conv(l3, "conv_l3_2", f, 3, LRELU)?;
    b.graph.set_outputs(&[l1, l2, l3]);
    Ok(())
}

/// `DCNv2Pack`: offsets and mask from `conv_offset(feat)`, then a modulated deformable conv of `x`.
fn dcn_pack(
    b: &mut Builder,
    x: ValueId,
    feat: ValueId,
    name: &str,
    f: usize,
    groups: usize,
    act: Activation,
) -> Result<ValueId> {
    let off = b.conv(feat, &format!("{name}.conv_offset"), 3 * groups * 9, 3, Activation::None)?;
    b.deform(x, off, name, f, groups, true, BorderRule::Torchvision, act)
}

/// A 3x3 conv with activation over `cat(x, reference)` (`2f` channels), split into its two
/// halves: the reference half (with the bias) is computed once per window and shared by the
/// window's frames, each frame adds its own half, then the activation. Saves half the conv and
/// the concatenation per frame (EDVR-M at 320x180: five 128->64 layers per level and five
/// cascade layers per window).
struct RefSplit {
    x_part: Conv2d,
    ref_part: ValueId,
}

impl RefSplit {
    fn new(b: &mut Builder, name: &str, reference: ValueId, f: usize) -> Result<RefSplit> {
        let r = b.load_conv_slice(name, 2 * f, f..2 * f, f, 3, true)?;
        let ref_part = b.graph.conv(reference, r);
        let x_part = b.load_conv_slice(name, 2 * f, 0..f, f, 3, false)?;
        Ok(RefSplit { x_part, ref_part })
    }

    fn apply(&self, b: &mut Builder, x: ValueId, act: Activation) -> ValueId {
        let t = b.graph.conv(x, self.x_part.clone());
        b.graph.add_act(t, self.ref_part, act)
    }
}

/// The reference halves of one window: `offset_conv1` at L1..L3 and `cas_offset_conv1`.
struct RefParts {
    offset_conv1: [RefSplit; 3],
    cas_offset_conv1: RefSplit,
}

impl RefParts {
    fn new(b: &mut Builder, reference: [ValueId; 3], f: usize) -> Result<RefParts> {
        let mut level =
            |i: usize| RefSplit::new(b, &format!("pcd_align.offset_conv1.l{}", i + 1), reference[i], f);
        let offset_conv1 = [level(0)?, level(1)?, level(2)?];
        let cas_offset_conv1 = RefSplit::new(b, "pcd_align.cas_offset_conv1", reference[0], f)?;
        Ok(RefParts { offset_conv1, cas_offset_conv1 })
    }
}

/// PCD alignment of one neighbour's pyramid to the reference pyramid (whose shared halves are
/// in `parts`).
fn pcd(b: &mut Builder, nbr: [ValueId; 3], parts: &RefParts, f: usize, groups: usize) -> Result<ValueId> {
    let mut up_off: Option<ValueId> = None;
    let mut up_feat: Option<ValueId> = None;
    let mut feat = 0;
    for i in (1..=3).rev() {
        let l = format!("l{i}");
        let mut off = parts.offset_conv1[i - 1].apply(b, nbr[i - 1], LRELU);
        if i == 3 {
            off = b.conv(off, &format!("pcd_align.offset_conv2.{l}"), f, 3, LRELU)?;
        } else {
            let cat = b.graph.concat(&[off, up_off.expect("set at the coarser level")]);
            off = b.conv(cat, &format!("pcd_align.offset_conv2.{l}"), f, 3, LRELU)?;
            off = b.conv(off, &format!("pcd_align.offset_conv3.{l}"), f, 3, LRELU)?;
        }
        // The activation after the level's output is fused where the next op allows it.
        let dcn_act = if i == 3 { LRELU } else { Activation::None };
        feat = dcn_pack(b, nbr[i - 1], off, &format!("pcd_align.dcn_pack.{l}"), f, groups, dcn_act)?;
        if i < 3 {
            let cat = b.graph.concat(&[feat, up_feat.expect("set at the coarser level")]);
            let act = if i > 1 { LRELU } else { Activation::None };
            feat = b.conv(cat, &format!("pcd_align.feat_conv.{l}"), f, 3, act)?;
        }
        if i > 1 {
            up_off = Some(b.graph.upsample_bilinear(off, 2, 2.0));
            up_feat = Some(b.graph.upsample_bilinear(feat, 2, 1.0));
        }
    }
    let off = parts.cas_offset_conv1.apply(b, feat, LRELU);
    let off = b.conv(off, "pcd_align.cas_offset_conv2", f, 3, LRELU)?;
    dcn_pack(b, feat, off, "pcd_align.cas_dcnpack", f, groups, LRELU)
}

/// TSA fusion of the aligned features of all frames.
fn tsa(b: &mut Builder, aligned: &[ValueId], center: usize, f: usize) -> Result<ValueId> {
    let t = aligned.len();
    let emb_ref = b.conv(aligned[center], "fusion.temporal_attn1", f, 3, Activation::None)?;
    let embs: Vec<ValueId> = aligned
        .iter()
        .map(|&a| b.conv(a, "fusion.temporal_attn2", f, 3, Activation::None))
        .collect::<Result<_>>()?;
    let weighted = b.graph.temporal_attention(&embs, emb_ref, aligned);
    let feat = b.conv(weighted, "fusion.feat_fusion", f, 1, LRELU)?;
    let pool2 = |b: &mut Builder, x: ValueId| {
        let mx = b.graph.pool(x, PoolKind::Max, 3, 2, 1);
        let av = b.graph.pool(x, PoolKind::Avg, 3, 2, 1);
        b.graph.concat(&[mx, av])
    };
    debug_assert_eq!(b.graph.channels(weighted), t * f);
    let attn = b.conv(weighted, "fusion.spatial_attn1", f, 1, LRELU)?;
    let p = pool2(b, attn);
    let attn = b.conv(p, "fusion.spatial_attn2", f, 1, LRELU)?;
    let lvl = b.conv(attn, "fusion.spatial_attn_l1", f, 1, LRELU)?;
    let p = pool2(b, lvl);
    let lvl = b.conv(p, "fusion.spatial_attn_l2", f, 3, LRELU)?;
    let lvl = b.conv(lvl, "fusion.spatial_attn_l3", f, 3, LRELU)?;
    let lvl = b.graph.upsample_bilinear(lvl, 2, 1.0);
    // lrelu(spatial_attn3(attn)) + attn_level: the epilogue applies the activation, then adds.
    let c = b.load_conv("fusion.spatial_attn3", f, f, 3, LRELU, None)?;
    let attn = b.graph.conv_residual(attn, c, lvl, 1.0);
    let attn = b.conv(attn, "fusion.spatial_attn4", f, 1, LRELU)?;
    let attn = b.graph.upsample_bilinear(attn, 2, 1.0);
    let attn = b.conv(attn, "fusion.spatial_attn5", f, 3, Activation::None)?;
    let add = b.conv(attn, "fusion.spatial_attn_add1", f, 1, LRELU)?;
    let add = b.conv(add, "fusion.spatial_attn_add2", f, 1, Activation::None)?;
    Ok(b.graph.tsa_combine(feat, attn, add))
}

/// Window graph: inputs are `[L1, L2, L3]` of each frame in window order, then the normalised
/// centre frame; the output is the upscaled centre frame.
pub(crate) fn build_window(b: &mut Builder, a: &Edvr) -> Result<()> {
    let f = a.num_feat;
    let t = a.num_frame;
    // The builder's first input is unused here: declare every window input explicitly.
    let mut levels: Vec<[ValueId; 3]> = Vec::with_capacity(t);
    for i in 0..t {
        let l1 = if i == 0 { b.graph.input() } else { b.graph.add_input(f) };
        let l2 = b.graph.add_input(f);
        let l3 = b.graph.add_input(f);
        levels.push([l1, l2, l3]);
    }
    let x_center = b.graph.add_input(3);
    let c = a.center_frame_idx;
    let parts = RefParts::new(b, levels[c], f)?;
    let aligned: Vec<ValueId> =
        (0..t).map(|i| pcd(b, levels[i], &parts, f, a.deformable_groups)).collect::<Result<_>>()?;
    let mut feat = if a.with_tsa {
        tsa(b, &aligned, c, f)?
    } else {
        let cat = b.graph.concat(&aligned);
        b.conv(cat, "fusion", f, 1, Activation::None)?
    };
    for i in 0..a.num_reconstruct_block {
        feat = b.res_block(
            feat,
            &format!("reconstruction.{i}.conv1"),
            &format!("reconstruction.{i}.conv2"),
            3,
            1.0,
        )?;
    }
    // lrelu(pixel_shuffle(conv(x))) == pixel_shuffle(lrelu(conv(x))): fused into the conv.
    let up = b.conv_shuffle(feat, "upconv1", 4 * f, 3, LRELU, 2, None)?;
    let up = b.conv_shuffle(up, "upconv2", 64 * 4, 3, LRELU, 2, None)?;
    let hr = b.conv(up, "conv_hr", 64, 3, LRELU)?;
    let base = if a.hr_in { x_center } else { b.graph.upsample_bilinear(x_center, 4, 1.0) };
    let c = b.load_conv("conv_last", 64, 3, 3, Activation::None, None)?;
    let out = b.graph.conv_residual(hr, c, base, 1.0);
    b.graph.set_outputs(&[out]);
    Ok(())
}
