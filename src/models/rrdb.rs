//! RRDBNet (ESRGAN, Real-ESRGAN x4plus; BasicSR `rrdbnet_arch.py`) in canonical names:
//! `conv_first`; `body.N.rdbK.conv1..5` (N residual-in-residual dense blocks of three residual
//! dense blocks); `conv_body` with the long skip from `conv_first`; two stages of nearest x2
//! upsampling + `conv_up1`/`conv_up2` + LeakyReLU 0.2; `conv_hr` + LeakyReLU; `conv_last`.
//! Real-ESRGAN's x2 and x1 models pixel-unshuffle the input by 2 or 4 first, so the same x4 body
//! produces x2 or x1.
//!
//! Dense concatenation is free: each residual dense block works in one buffer
//! `[x | x1 | x2 | x3 | x4]` (F + 4G channels); conv1..4 write their slice and read the prefix
//! before it, conv5 reads the whole buffer and writes `x + 0.2·conv5(..)` straight into the prefix
//! of the next block's buffer. The block residual of an RRDB, `x0 + 0.2·rdb3(..)`, is fused into
//! the third block's conv5 as a second residual: `x0 + 0.2·(x + 0.2·conv5(..))`, written in place
//! over `x0` when it dies there. PyTorch rounds `x5·0.2` and the sum separately where the fused
//! epilogue uses one FMA per residual: a difference of about one float ulp per block.

use super::arch::Rrdb;
use super::build::Builder;
use crate::error::Result;
use crate::graph::ValueId;
use crate::kernels::gemm::Activation;

const LRELU: Activation = Activation::LeakyRelu(0.2);
/// Residual scale of ESRGAN's dense blocks and RRDBs.
pub(crate) const BETA: f32 = 0.2;

pub(crate) fn build(b: &mut Builder, a: &Rrdb) -> Result<()> {
    let (f, gr) = (a.num_feat, a.num_grow_ch);
    let width = f + 4 * gr;
    let mut x: ValueId = b.graph.input();
    x = match a.scale {
        2 => b.graph.pixel_unshuffle(x, 2),
        1 => b.graph.pixel_unshuffle(x, 4),
        _ => x,
    };
    let mut buf = b.graph.buffer(width);
    let feat = b.graph.view(buf, 0, f);
    b.conv_to(x, "conv_first", f, 3, Activation::None, None, None, Some(feat))?;
    let mut cur = feat;
    for i in 0..a.num_block {
        let block_in = cur;
        for k in 1..=3 {
            let p = format!("body.{i}.rdb{k}");
            for m in 0..4 {
                let prefix = b.graph.view(buf, 0, f + m * gr);
                let slice = b.graph.view(buf, f + m * gr, gr);
                b.conv_to(prefix, &format!("{p}.conv{}", m + 1), gr, 3, LRELU, None, None, Some(slice))?;
            }
            let all = b.graph.view(buf, 0, width);
            let next = b.graph.buffer(width);
            let out = b.graph.view(next, 0, f);
            let res2 = (k == 3).then_some((block_in, BETA));
            b.conv_to(
                all,
                &format!("{p}.conv5"),
                f,
                3,
                Activation::None,
                Some((cur, BETA)),
                res2,
                Some(out),
            )?;
            buf = next;
            cur = out;
        }
    }
    let mut h = b.conv_res(cur, "conv_body", 3, feat, 1.0)?;
    for up in ["conv_up1", "conv_up2"] {
        h = b.graph.upsample_nearest(h, 2);
        h = b.conv(h, up, f, 3, LRELU)?;
    }
    h = b.conv(h, "conv_hr", f, 3, LRELU)?;
    b.conv(h, "conv_last", 3, 3, Activation::None)?;
    Ok(())
}
