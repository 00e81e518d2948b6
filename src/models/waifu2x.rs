//! waifu2x networks in nunif's PyTorch names (the same weights ncnn stores for
//! waifu2x-ncnn-vulkan, in the same order).
//!
//! - UpConv7 (`upconv_7`): six valid 3x3 convs with LeakyReLU 0.1 (`net.0` .. `net.10`), then a
//!   4x4 stride-2 transposed conv with padding 3 (`net.12`): x2, consuming 7 pixels of pre-padding
//!   on each side.
//! - CUNet (`cunet`, `upcunet`): two cascaded U-Nets of valid convs. Each level is a `UNetConv`
//!   (two 3x3 convs + LeakyReLU, then squeeze-and-excitation below the top level), 2x2 stride-2
//!   convs go down, 2x2 stride-2 transposed convs go up, and skips are cropped and added. UNet1 ends
//!   in the 4x4 transposed conv (x2) or a 3x3 conv (x1, the denoise-only models); UNet2 refines
//!   UNet1's output and the result is `crop(unet1, 20) + unet2`. The x2 model consumes 18 pixels
//!   of pre-padding and needs even sizes, the x1 model 28 pixels and multiples of 4 (found from the
//!   graph, see `Graph::geometry`).
//!
//! ncnn's graphs (converted from waifu2x-caffe) do not clamp UNet1's output before UNet2 and do
//! not clamp the final output; nunif's PyTorch models do. We follow the weights' own graph; the
//! image pipeline clamps when it quantises.

use super::arch::{Cunet, UpConv7};
use super::build::Builder;
use crate::error::{Error, Result};
use crate::graph::ValueId;
use crate::kernels::conv::ConvSpec;
use crate::kernels::deconv::DeconvSpec;
use crate::kernels::gemm::Activation;

const LRELU: Activation = Activation::LeakyRelu(0.1);

/// What kind of weight layer a canonical name is (for importers that map layers by order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LayerKind {
    Conv,
    Deconv,
    /// A fully connected layer stored as a 1x1 conv (`[out, in, 1, 1]`).
    Fc,
}

/// UpConv7's weight layers in forward order.
pub(crate) fn upconv7_layers() -> Vec<(String, LayerKind)> {
    let mut v: Vec<(String, LayerKind)> =
        (0..6).map(|i| (format!("net.{}", 2 * i), LayerKind::Conv)).collect();
    v.push(("net.12".into(), LayerKind::Deconv));
    v
}

/// CUNet's weight layers in forward order (UNet1 then UNet2).
pub(crate) fn cunet_layers(scale: usize) -> Vec<(String, LayerKind)> {
    use LayerKind::*;
    let mut v = Vec::new();
    let mut put = |n: &str, k: LayerKind| v.push((n.to_string(), k));
    let unet_conv = |put: &mut dyn FnMut(&str, LayerKind), p: &str, se: bool| {
        put(&format!("{p}.conv.0"), Conv);
        put(&format!("{p}.conv.2"), Conv);
        if se {
            put(&format!("{p}.seblock.conv1"), Fc);
            put(&format!("{p}.seblock.conv2"), Fc);
        }
    };
    unet_conv(&mut put, "unet1.conv1", false);
    put("unet1.conv1_down", Conv);
    unet_conv(&mut put, "unet1.conv2", true);
    put("unet1.conv2_up", Deconv);
    put("unet1.conv3", Conv);
    put("unet1.conv_bottom", if scale == 2 { Deconv } else { Conv });
    unet_conv(&mut put, "unet2.conv1", false);
    put("unet2.conv1_down", Conv);
    unet_conv(&mut put, "unet2.conv2", true);
    put("unet2.conv2_down", Conv);
    unet_conv(&mut put, "unet2.conv3", true);
    put("unet2.conv3_up", Deconv);
    unet_conv(&mut put, "unet2.conv4", true);
    put("unet2.conv4_up", Deconv);
    put("unet2.conv5", Conv);
    put("unet2.conv_bottom", Conv);
    v
}

/// Output channels of `{name}.weight` (dim 0 of a conv, dim 1 of a transposed conv).
fn out_channels(b: &Builder, name: &str, transposed: bool) -> Result<usize> {
    let t = format!("{name}.weight");
    match b.src.shape(&t).and_then(|s| (s.len() == 4).then(|| s[transposed as usize])) {
        Some(c) if c > 0 => Ok(c),
        Some(_) => Err(Error::tensor(b.src.path(), t, "has no output channels")),
        None => Err(Error::tensor(b.src.path(), t, "missing or not a 4-D convolution weight")),
    }
}

fn valid(cin: usize, cout: usize) -> ConvSpec {
    ConvSpec { cin, cout, kh: 3, kw: 3, stride: 1, pad: 0 }
}

fn down(c: usize) -> ConvSpec {
    ConvSpec { cin: c, cout: c, kh: 2, kw: 2, stride: 2, pad: 0 }
}

fn up(cin: usize, cout: usize) -> DeconvSpec {
    DeconvSpec { cin, cout, k: 2, stride: 2, pad: 0 }
}

/// The x2 output layer of UpConv7 and UpCUNet's UNet1.
fn up_out(cin: usize) -> DeconvSpec {
    DeconvSpec { cin, cout: 3, k: 4, stride: 2, pad: 3 }
}

pub(crate) fn build_upconv7(b: &mut Builder, _: &UpConv7) -> Result<()> {
    let mut h: ValueId = b.graph.input();
    for i in 0..6 {
        let name = format!("net.{}", 2 * i);
        let cout = out_channels(b, &name, false)?;
        h = b.conv_spec(h, &name, valid(b.graph.channels(h), cout), LRELU)?;
    }
    b.deconv(h, "net.12", up_out(b.graph.channels(h)), Activation::None)?;
    Ok(())
}

/// Two 3x3 valid convs with LeakyReLU, then squeeze-and-excitation if `se`. Channel counts come
/// from the weights (nunif's CUNet: 32/64, 128/64, 64/128, 256/128, 64/64).
fn unet_conv(b: &mut Builder, x: ValueId, p: &str, se: bool) -> Result<ValueId> {
    let (mid, out) =
        (out_channels(b, &format!("{p}.conv.0"), false)?, out_channels(b, &format!("{p}.conv.2"), false)?);
    let h = b.conv_spec(x, &format!("{p}.conv.0"), valid(b.graph.channels(x), mid), LRELU)?;
    let h = b.conv_spec(h, &format!("{p}.conv.2"), valid(mid, out), LRELU)?;
    if se {
        b.se(h, &format!("{p}.seblock"))
    } else {
        Ok(h)
    }
}

fn down_conv(b: &mut Builder, x: ValueId, name: &str) -> Result<ValueId> {
    let c = b.graph.channels(x);
    b.conv_spec(x, name, down(c), LRELU)
}

fn up_conv(b: &mut Builder, x: ValueId, name: &str) -> Result<ValueId> {
    let (cin, cout) = (b.graph.channels(x), out_channels(b, name, true)?);
    b.deconv(x, name, up(cin, cout), LRELU)
}

fn unet1(b: &mut Builder, x: ValueId, scale: usize) -> Result<ValueId> {
    let x1 = unet_conv(b, x, "unet1.conv1", false)?;
    let x2 = down_conv(b, x1, "unet1.conv1_down")?;
    let x2 = unet_conv(b, x2, "unet1.conv2", true)?;
    let x2 = up_conv(b, x2, "unet1.conv2_up")?;
    let x3 = b.crop_add(x1, 4, x2, "unet1.conv2_up.weight")?;
    let c = b.graph.channels(x3);
    let x3 = b.conv_spec(x3, "unet1.conv3", valid(c, out_channels(b, "unet1.conv3", false)?), LRELU)?;
    let c = b.graph.channels(x3);
    if scale == 2 {
        b.deconv(x3, "unet1.conv_bottom", up_out(c), Activation::None)
    } else {
        b.conv_spec(x3, "unet1.conv_bottom", valid(c, 3), Activation::None)
    }
}

fn unet2(b: &mut Builder, x: ValueId) -> Result<ValueId> {
    let x1 = unet_conv(b, x, "unet2.conv1", false)?;
    let x2 = down_conv(b, x1, "unet2.conv1_down")?;
    let x2 = unet_conv(b, x2, "unet2.conv2", true)?;
    let x3 = down_conv(b, x2, "unet2.conv2_down")?;
    let x3 = unet_conv(b, x3, "unet2.conv3", true)?;
    let x3 = up_conv(b, x3, "unet2.conv3_up")?;
    let x4 = b.crop_add(x2, 4, x3, "unet2.conv3_up.weight")?;
    let x4 = unet_conv(b, x4, "unet2.conv4", true)?;
    let x4 = up_conv(b, x4, "unet2.conv4_up")?;
    let x5 = b.crop_add(x1, 16, x4, "unet2.conv4_up.weight")?;
    let c = b.graph.channels(x5);
    let x5 = b.conv_spec(x5, "unet2.conv5", valid(c, out_channels(b, "unet2.conv5", false)?), LRELU)?;
    let c = b.graph.channels(x5);
    b.conv_spec(x5, "unet2.conv_bottom", valid(c, 3), Activation::None)
}

pub(crate) fn build_cunet(b: &mut Builder, a: &Cunet) -> Result<()> {
    let x = b.graph.input();
    let z1 = unet1(b, x, a.scale)?;
    let z2 = unet2(b, z1)?;
    b.crop_add(z1, 20, z2, "unet2.conv_bottom.weight")?;
    Ok(())
}
