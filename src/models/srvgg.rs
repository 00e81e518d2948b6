//! SRVGGNetCompact (Real-ESRGAN `srvgg_arch.py`): `body.0` conv 3->F, then `num_conv` convs F->F,
//! each followed by an activation (PReLU layers hold per-channel slopes at the odd indices), a last
//! conv F->3·s², pixel shuffle, and the nearest-upsampled input added to the result.

use super::arch::{Srvgg, SrvggAct};
use super::build::Builder;
use crate::error::Result;
use crate::graph::ValueId;
use crate::kernels::gemm::Activation;

pub(crate) fn build(b: &mut Builder, a: &Srvgg) -> Result<()> {
    let x: ValueId = b.graph.input();
    let act = match a.act {
        SrvggAct::PRelu => Activation::PRelu,
        SrvggAct::Relu => Activation::Relu,
        SrvggAct::LeakyRelu => Activation::LeakyRelu(0.1),
    };
    let mut h = x;
    for i in 0..=a.num_conv {
        let name = format!("body.{}", 2 * i);
        h = if a.act == SrvggAct::PRelu {
            b.conv_prelu(h, &name, a.num_feat, &format!("body.{}.weight", 2 * i + 1))?
        } else {
            b.conv(h, &name, a.num_feat, 3, act)?
        };
    }
    let last = format!("body.{}", 2 * a.num_conv + 2);
    b.conv_shuffle(h, &last, 3 * a.scale * a.scale, 3, Activation::None, a.scale, Some(x))?;
    Ok(())
}
