//! EDSR in canonical (BasicSR) names: `conv_first`, `body.N.conv1/conv2` residual blocks
//! (conv, ReLU, conv, times res_scale, plus input), `conv_after_body` with the long skip from
//! `conv_first`, the sub-pixel `upsample.*`, and `conv_last`. EDSR-PyTorch checkpoints are renamed
//! into these names on load (see `detect.rs`).

use super::arch::Edsr;
use super::build::Builder;
use crate::error::Result;
use crate::kernels::gemm::Activation;

pub(crate) fn build(b: &mut Builder, a: &Edsr) -> Result<()> {
    let x = b.graph.input();
    let f = a.num_feat;
    let head = b.conv(x, "conv_first", f, 3, Activation::None)?;
    let mut h = head;
    for i in 0..a.num_block {
        let t = b.conv(h, &format!("body.{i}.conv1"), f, 3, Activation::Relu)?;
        h = b.conv_res(t, &format!("body.{i}.conv2"), 3, h, a.res_scale)?;
    }
    h = b.conv_res(h, "conv_after_body", 3, head, 1.0)?;
    h = b.upsampler(h, "upsample", a.scale)?;
    b.conv(h, "conv_last", 3, 3, Activation::None)?;
    Ok(())
}
