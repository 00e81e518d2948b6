//! idealo's residual dense networks, in their Keras layer names (kernels converted to OIHW by
//! `tools/convert_keras.py`):
//!
//! - RDN: `F_m1`, `F_0`; D residual dense blocks of C 3x3 convs `F_d_c` (G filters, ReLU, dense
//!   concatenation) fused by the 1x1 `LFF_d` plus the block input; global feature fusion `GFF_1`
//!   (1x1 over the concatenation of every block output) and `GFF_2` (3x3) plus `F_m1`; the
//!   upsampler `UPN1` (5x5, 64 filters, ReLU), `UPN2` (3x3, 32, ReLU), `UPN3` (3x3, 3·s²), nearest
//!   `UpSampling2D` by s (or a pixel shuffle), and `SR` (3x3 to RGB).
//! - RRDN: `Pre_blocks_conv`; T residual-in-residual blocks of D dense blocks (C convs `F_t_d_c`
//!   with ReLU and the 3x3 `LFF_t_d`), `x + beta·LFF` per dense block and `in + beta·x` per RRDB;
//!   `post_blocks_conv` plus `Pre_blocks_conv`; `PreShuffle` (3·s²), pixel shuffle, `SR`.
//!
//! Dense blocks work in one buffer `[x | F_1 | .. | F_C]` as in RRDBNet. RDN's global fusion never
//! builds its D·G0-channel concatenation: `GFF_1` is applied block by block as it is produced,
//! `acc = GFF_1[d](LRL_d) + acc`, with the bias on the first part. That sums the 1x1 products in
//! D partial sums instead of one, which rounds differently from Keras by a few float ulps.
//! The pixel shuffles use PyTorch's channel order; the converter permutes `PreShuffle` (and a
//! shuffle RDN's `UPN3`) from TensorFlow's `depth_to_space` order.

use super::arch::{Rdn, RdnUpsampler, Rrdn};
use super::build::Builder;
use super::rrdb::dense_rrdb_body;
use crate::error::Result;
use crate::kernels::gemm::Activation;

pub(crate) fn build_rdn(b: &mut Builder, a: &Rdn) -> Result<()> {
    let (g0, g, c) = (a.g0, a.g, a.c);
    let width = g0 + c * g;
    let x = b.graph.input();
    let f_m1 = b.conv(x, "F_m1", g0, 3, Activation::None)?;
    let mut buf = b.graph.buffer(width);
    let mut cur = b.graph.view(buf, 0, g0);
    b.conv_to(f_m1, "F_0", g0, 3, Activation::None, None, None, Some(cur))?;
    let mut acc = None;
    for d in 1..=a.d {
        for k in 1..=c {
            let prefix = b.graph.view(buf, 0, g0 + (k - 1) * g);
            let slice = b.graph.view(buf, g0 + (k - 1) * g, g);
            b.conv_to(prefix, &format!("F_{d}_{k}"), g, 3, Activation::Relu, None, None, Some(slice))?;
        }
        let all = b.graph.view(buf, 0, width);
        let out = if d < a.d {
            buf = b.graph.buffer(width);
            Some(b.graph.view(buf, 0, g0))
        } else {
            None
        };
        let lrl =
            b.conv_to(all, &format!("LFF_{d}"), g0, 1, Activation::None, Some((cur, 1.0)), None, out)?;
        cur = lrl;
        let part = b.load_conv_slice("GFF_1", a.d * g0, (d - 1) * g0..d * g0, g0, 1, d == 1)?;
        acc = Some(match acc {
            None => b.graph.conv(lrl, part),
            Some(prev) => b.graph.conv_residual(lrl, part, prev, 1.0),
        });
    }
    let gff1 = acc.expect("at least one dense block (checked by validate)");
    let fdf = b.conv_res(gff1, "GFF_2", 3, f_m1, 1.0)?;
    // idealo's UPN1/UPN2 have 64 and 32 filters; read them so reduced test models work too.
    let width = |b: &Builder, n: &str, default: usize| {
        b.src.shape(n).and_then(|s| s.first().copied()).unwrap_or(default)
    };
    let (w1, w2) = (width(b, "UPN1.weight", 64), width(b, "UPN2.weight", 32));
    let h = b.conv(fdf, "UPN1", w1, 5, Activation::Relu)?;
    let h = b.conv(h, "UPN2", w2, 3, Activation::Relu)?;
    let n = 3 * a.scale * a.scale;
    let h = match a.upsampler {
        RdnUpsampler::Nearest => {
            let h = b.conv(h, "UPN3", n, 3, Activation::None)?;
            b.graph.upsample_nearest(h, a.scale)
        }
        RdnUpsampler::Shuffle => b.conv_shuffle(h, "UPN3", n, 3, Activation::None, a.scale, None)?,
    };
    b.conv(h, "SR", 3, 3, Activation::None)?;
    Ok(())
}

pub(crate) fn build_rrdn(b: &mut Builder, a: &Rrdn) -> Result<()> {
    let x = b.graph.input();
    let width = a.g0 + a.c * a.g;
    let buf = b.graph.buffer(width);
    let pre = b.graph.view(buf, 0, a.g0);
    b.conv_to(x, "Pre_blocks_conv", a.g0, 3, Activation::None, None, None, Some(pre))?;
    let names = |t: usize, d: usize, c: usize| {
        if c <= a.c {
            format!("F_{}_{}_{}", t + 1, d, c)
        } else {
            format!("LFF_{}_{}", t + 1, d)
        }
    };
    let body = dense_rrdb_body(b, buf, a.t, a.d, a.c, a.g0, a.g, Activation::Relu, a.beta, &names)?;
    let grl = b.conv_res(body, "post_blocks_conv", 3, pre, 1.0)?;
    let h = b.conv_shuffle(grl, "PreShuffle", 3 * a.scale * a.scale, 3, Activation::None, a.scale, None)?;
    b.conv(h, "SR", 3, 3, Activation::None)?;
    Ok(())
}
