//! MDSR (EDSR-PyTorch `mdsr.py`), in its own names: `head.0`; per scale `pre_process.i` = two
//! residual blocks of 5x5 convs (`.{0,1}.body.{0,2}`); shared `body.N.body.{0,2}` blocks and the
//! final `body.{n}` conv with the long skip from after pre-processing; per-scale `upsample.i`;
//! shared `tail.0` conv. Mean shift is applied at the image boundary.

use super::arch::Mdsr;
use super::build::Builder;
use crate::error::Result;
use crate::kernels::gemm::Activation;

pub(crate) fn build(b: &mut Builder, a: &Mdsr, scale: usize) -> Result<()> {
    let idx = a.scales.iter().position(|&s| s == scale).expect("scale resolved by the caller");
    let f = a.num_feat;
    let x = b.graph.input();
    let mut h = b.conv(x, "head.0", f, 3, Activation::None)?;
    for blk in 0..2 {
        let p = format!("pre_process.{idx}.{blk}.body");
        let t = b.conv(h, &format!("{p}.0"), f, 5, Activation::Relu)?;
        h = b.conv_res(t, &format!("{p}.2"), 5, h, 1.0)?;
    }
    let skip = h;
    for i in 0..a.num_block {
        let t = b.conv(h, &format!("body.{i}.body.0"), f, 3, Activation::Relu)?;
        h = b.conv_res(t, &format!("body.{i}.body.2"), 3, h, a.res_scale)?;
    }
    h = b.conv_res(h, &format!("body.{}", a.num_block), 3, skip, 1.0)?;
    h = b.upsampler(h, &format!("upsample.{idx}"), scale)?;
    b.conv(h, "tail.0", 3, 3, Activation::None)?;
    Ok(())
}
