//! TDAN (Tian et al. 2020) in the official layout (`TDAN_VSR`): per-frame features (`conv_first`,
//! `residual_layer`), deformable alignment of each supporting frame to the reference (`cr`,
//! `off2d_1`/`dconv_1`, `off2d_2`/`deconv_2`, `off2d_3`/`deconv_3` applied to the *supporting*
//! frame's features, `off2d`/`dconv`; DCNv1 without mask or bias, with the original DCNv1 kernel's
//! border rule), `recon_lr` back to an aligned LR frame, then `fea_ex`, `recon_layer` and the x4
//! `up` stack on the five (aligned) LR frames. Inputs are `frame/255 - 0.5`.

use super::arch::Tdan;
use super::build::Builder;
use crate::error::Result;
use crate::graph::ValueId;
use crate::kernels::deform::BorderRule;
use crate::kernels::gemm::Activation;

/// Frame graph: normalised frame -> features.
pub(crate) fn build_frame(b: &mut Builder, a: &Tdan) -> Result<()> {
    let x = b.graph.input();
    let mut h = b.conv(x, "conv_first", a.num_feat, 3, Activation::Relu)?;
    for i in 0..a.num_extract_block {
        h = b.res_block(
            h,
            &format!("residual_layer.{i}.conv1"),
            &format!("residual_layer.{i}.conv2"),
            3,
            1.0,
        )?;
    }
    b.graph.set_outputs(&[h]);
    Ok(())
}

/// Window graph: inputs are the features of each frame in window order, then the normalised
/// centre frame; the output is the upscaled centre frame (before the +0.5 shift).
pub(crate) fn build_window(b: &mut Builder, a: &Tdan) -> Result<()> {
    let (f, t, g) = (a.num_feat, a.num_frame, a.deformable_groups);
    let feats: Vec<ValueId> =
        (0..t).map(|i| if i == 0 { b.graph.input() } else { b.graph.add_input(f) }).collect();
    let x_center = b.graph.add_input(3);
    let c = t / 2;
    let reference = feats[c];
    // `cr` over cat(reference, supp) as a sum of two convs: the reference half (with the bias)
    // once per window, each supporting frame's half added in its epilogue.
    let cr_ref = b.load_conv_slice("cr", 2 * f, 0..f, f, 3, true)?;
    let cr_ref = b.graph.conv(reference, cr_ref);
    let cr_supp = b.load_conv_slice("cr", 2 * f, f..2 * f, f, 3, false)?;
    let mut lrs = Vec::with_capacity(t);
    for (i, &supp) in feats.iter().enumerate() {
        if i == c {
            lrs.push(x_center);
            continue;
        }
        let fea = b.graph.conv_residual(supp, cr_supp.clone(), cr_ref, 1.0);
        let off = b.conv(fea, "off2d_1", 2 * g * 9, 3, Activation::None)?;
        let fea = b.deform(fea, off, "dconv_1", f, g, false, BorderRule::Dcnv1, Activation::None)?;
        let off = b.conv(fea, "off2d_2", 2 * g * 9, 3, Activation::None)?;
        let fea = b.deform(fea, off, "deconv_2", f, g, false, BorderRule::Dcnv1, Activation::None)?;
        let off = b.conv(fea, "off2d_3", 2 * g * 9, 3, Activation::None)?;
        let fea = b.deform(supp, off, "deconv_3", f, g, false, BorderRule::Dcnv1, Activation::None)?;
        let off = b.conv(fea, "off2d", 2 * g * 9, 3, Activation::None)?;
        let aligned = b.deform(fea, off, "dconv", f, g, false, BorderRule::Dcnv1, Activation::None)?;
        lrs.push(b.conv(aligned, "recon_lr", 3, 3, Activation::None)?);
    }
    let y = b.graph.concat(&lrs);
    let mut h = b.conv(y, "fea_ex.0", f, 3, Activation::Relu)?;
    for i in 0..a.num_reconstruct_block {
        h = b.res_block(h, &format!("recon_layer.{i}.conv1"), &format!("recon_layer.{i}.conv2"), 3, 1.0)?;
    }
    let h = b.upsampler(h, "up.0", 4)?;
    let c = b.load_conv_spec(
        "up.1",
        crate::kernels::conv::ConvSpec::same(f, 3, 3),
        Activation::None,
        None,
        false,
    )?;
    let out = b.graph.conv(h, c);
    b.graph.set_outputs(&[out]);
    Ok(())
}
