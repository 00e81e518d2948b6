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
    let mut x: ValueId = b.graph.input();
    x = match a.scale {
        2 => b.graph.pixel_unshuffle(x, 2),
        1 => b.graph.pixel_unshuffle(x, 4),
        _ => x,
    };
    let buf = b.graph.buffer(f + 4 * gr);
    let feat = b.graph.view(buf, 0, f);
    b.conv_to(x, "conv_first", f, 3, Activation::None, None, None, Some(feat))?;
    let names = |t: usize, d: usize, c: usize| format!("body.{t}.rdb{d}.conv{c}");
    let body = dense_rrdb_body(b, buf, a.num_block, 3, 4, f, gr, LRELU, BETA, &names)?;
    let mut h = b.conv_res(body, "conv_body", 3, feat, 1.0)?;
    for up in ["conv_up1", "conv_up2"] {
        h = b.graph.upsample_nearest(h, 2);
        h = b.conv(h, up, f, 3, LRELU)?;
    }
    h = b.conv(h, "conv_hr", f, 3, LRELU)?;
    b.conv(h, "conv_last", 3, 3, Activation::None)?;
    Ok(())
}

/// `blocks` residual-in-residual blocks of `dense` residual dense blocks, each of `convs` 3x3
/// convs (`growth` filters, activation `act`) and a 3x3 fusion conv to `f` features; `x + beta·y`
/// per dense block and `in + beta·out` per block. `buf` (`f + convs·growth` channels) holds the
/// input in its first `f` channels. `name(t, d, c)` names conv `c` (1-based; `convs + 1` is the
/// fusion conv) of dense block `d` (1-based) of block `t` (0-based). Returns the output (the
/// first `f` channels of the last buffer).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense_rrdb_body(
    b: &mut Builder,
    mut buf: ValueId,
    blocks: usize,
    dense: usize,
    convs: usize,
    f: usize,
    growth: usize,
    act: Activation,
    beta: f32,
    name: &dyn Fn(usize, usize, usize) -> String,
) -> Result<ValueId> {
    let width = f + convs * growth;
    let mut cur = b.graph.view(buf, 0, f);
    for t in 0..blocks {
        let block_in = cur;
        for d in 1..=dense {
            for m in 0..convs {
                let prefix = b.graph.view(buf, 0, f + m * growth);
                let slice = b.graph.view(buf, f + m * growth, growth);
                b.conv_to(prefix, &name(t, d, m + 1), growth, 3, act, None, None, Some(slice))?;
            }
            let all = b.graph.view(buf, 0, width);
            let next = b.graph.buffer(width);
            let out = b.graph.view(next, 0, f);
            let res2 = (d == dense).then_some((block_in, beta));
            b.conv_to(
                all,
                &name(t, d, convs + 1),
                f,
                3,
                Activation::None,
                Some((cur, beta)),
                res2,
                Some(out),
            )?;
            buf = next;
            cur = out;
        }
    }
    Ok(cur)
}
