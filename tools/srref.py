"""Shared helpers for the developer-only PyTorch reference tools.

Model definitions written from a reading of the official sources:

* BasicSR ``basicsr/archs/edsr_arch.py`` + ``arch_util.py``
  (``ResidualBlockNoBN``, ``Upsample``)
* EDSR-PyTorch ``src/model/edsr.py``, ``src/model/mdsr.py``, ``src/model/common.py``
  (``MeanShift``, ``ResBlock``, ``Upsampler``, ``default_conv``)
* Real-ESRGAN ``realesrgan/archs/srvgg_arch.py`` (``SRVGGNetCompact``)
* BasicSR ``basicsr/archs/rrdbnet_arch.py`` (``RRDBNet``, ``RRDB``, ``ResidualDenseBlock``) and
  Real-ESRGAN ``realesrgan/utils.py`` (``RealESRGANer.pre_process``: reflect padding to a multiple
  of the unshuffle factor for the x2/x1 models)
* nunif ``waifu2x/models/upconv_7.py`` (``UpConv7``), ``waifu2x/models/cunet.py`` (``UNetConv``,
  ``UNet1``, ``UNet2``, ``CUNet``, ``UpCUNet``) and ``nunif/modules/se_block.py``; as in the ncnn
  graphs of waifu2x-ncnn-vulkan, UNet1's output is not clamped before UNet2 and nothing is clamped
  at the end (nunif clamps both). ``waifu2x_run`` pads like waifu2x-ncnn-vulkan (edge replicate,
  plus bottom/right to the model's alignment)

Attribute names and container layouts are chosen so that ``state_dict()`` keys and
shapes are exactly those of the official modules (the real
``realesr-animevideov3.pth`` loads with ``strict=True``; see ``parity_real.py``).

This module, like everything in ``tools/``, is never imported by the product or CI.
"""

import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# DIV2K mean used by both BasicSR and EDSR-PyTorch.
RGB_MEAN = (0.4488, 0.4371, 0.4040)


# --------------------------------------------------------------------------
# BasicSR layout: EDSR
# --------------------------------------------------------------------------


class ResidualBlockNoBN(nn.Module):
    """conv1 -> ReLU -> conv2, scaled by res_scale, plus identity."""

    def __init__(self, num_feat, res_scale=1.0):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x))) * self.res_scale


def basicsr_upsample(scale, num_feat):
    """BasicSR ``Upsample``: Sequential of (conv, PixelShuffle) pairs.

    Conv modules therefore sit at even indices: ``upsample.0`` (x2, x3),
    ``upsample.0`` + ``upsample.2`` (x4).
    """
    layers = []
    if scale & (scale - 1) == 0:
        for _ in range(int(round(math.log2(scale)))):
            layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"unsupported scale {scale}")
    return nn.Sequential(*layers)


class EDSRBasicSR(nn.Module):
    """BasicSR EDSR. Input in [0,1]; output in [0,1] (nominally).

    The mean is a plain tensor (not a buffer), so it is not in the state dict.
    """

    def __init__(self, num_feat=64, num_block=16, upscale=4, res_scale=1.0,
                 img_range=255.0, rgb_mean=RGB_MEAN, num_in_ch=3, num_out_ch=3):
        super().__init__()
        self.img_range = img_range
        self.mean = torch.tensor(rgb_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat, res_scale) for _ in range(num_block)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = basicsr_upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x):
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        x = self.conv_first(x)
        res = self.conv_after_body(self.body(x)) + x
        x = self.conv_last(self.upsample(res))
        return x / self.img_range + mean


# --------------------------------------------------------------------------
# EDSR-PyTorch layout: EDSR and MDSR
# --------------------------------------------------------------------------


def pt_conv(cin, cout, k, bias=True):
    """EDSR-PyTorch ``default_conv``: 'same' padding k//2, stride 1."""
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


class MeanShift(nn.Conv2d):
    """1x1 conv with weight eye(3)/std and bias sign*rgb_range*mean/std.

    These are real parameters, so they are in the state dict
    (``sub_mean.weight`` [3,3,1,1], ``sub_mean.bias`` [3], same for ``add_mean``).
    """

    def __init__(self, rgb_range, rgb_mean=RGB_MEAN, rgb_std=(1.0, 1.0, 1.0), sign=-1):
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(rgb_std, dtype=torch.float32)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean, dtype=torch.float32) / std)
        for p in self.parameters():
            p.requires_grad = False


class PtResBlock(nn.Module):
    """``common.ResBlock``: body = Sequential(conv, ReLU, conv); out = body(x)*res_scale + x."""

    def __init__(self, n_feats, kernel_size, res_scale=1.0):
        super().__init__()
        self.body = nn.Sequential(
            pt_conv(n_feats, n_feats, kernel_size),
            nn.ReLU(),
            pt_conv(n_feats, n_feats, kernel_size),
        )
        self.res_scale = res_scale

    def forward(self, x):
        return self.body(x).mul(self.res_scale) + x


def pt_upsampler(scale, n_feats):
    """``common.Upsampler`` with bn=False, act=False: conv at 0 (and 2 for x4)."""
    layers = []
    if scale & (scale - 1) == 0:
        for _ in range(int(round(math.log2(scale)))):
            layers += [pt_conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [pt_conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"unsupported scale {scale}")
    return nn.Sequential(*layers)


class EDSRPyTorch(nn.Module):
    """EDSR-PyTorch ``model/edsr.py``. Input and output in [0, rgb_range]."""

    def __init__(self, n_feats=64, n_resblocks=16, scale=4, res_scale=1.0, rgb_range=255, n_colors=3):
        super().__init__()
        self.sub_mean = MeanShift(rgb_range)
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(pt_conv(n_colors, n_feats, 3))
        body = [PtResBlock(n_feats, 3, res_scale) for _ in range(n_resblocks)]
        body.append(pt_conv(n_feats, n_feats, 3))
        self.body = nn.Sequential(*body)
        self.tail = nn.Sequential(pt_upsampler(scale, n_feats), pt_conv(n_feats, n_colors, 3))

    def forward(self, x):
        x = self.head(self.sub_mean(x))
        res = self.body(x) + x
        return self.add_mean(self.tail(res))


class MDSR(nn.Module):
    """EDSR-PyTorch ``model/mdsr.py``. Input and output in [0, rgb_range].

    Shared head/body/tail, per-scale ``pre_process`` (two 5x5 ResBlocks) and
    per-scale ``upsample``. ResBlocks use res_scale 1 (not configurable).
    """

    def __init__(self, n_feats=64, n_resblocks=16, scales=(2, 3, 4), rgb_range=255, n_colors=3):
        super().__init__()
        self.scales = tuple(scales)
        self.sub_mean = MeanShift(rgb_range)
        self.head = nn.Sequential(pt_conv(n_colors, n_feats, 3))
        self.pre_process = nn.ModuleList(
            [nn.Sequential(PtResBlock(n_feats, 5), PtResBlock(n_feats, 5)) for _ in self.scales]
        )
        body = [PtResBlock(n_feats, 3) for _ in range(n_resblocks)]
        body.append(pt_conv(n_feats, n_feats, 3))
        self.body = nn.Sequential(*body)
        self.upsample = nn.ModuleList([pt_upsampler(s, n_feats) for s in self.scales])
        self.tail = nn.Sequential(pt_conv(n_feats, n_colors, 3))
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.scale_idx = 0

    def forward(self, x):
        i = self.scale_idx
        x = self.head(self.sub_mean(x))
        x = self.pre_process[i](x)
        res = self.body(x) + x
        x = self.tail(self.upsample[i](res))
        return self.add_mean(x)


# --------------------------------------------------------------------------
# Real-ESRGAN layout: SRVGGNetCompact
# --------------------------------------------------------------------------


def _srvgg_act(act_type, num_feat):
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "relu":
        return nn.ReLU()
    if act_type == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1)
    raise ValueError(act_type)


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN compact net. Input [0,1]; output nominally [0,1] (not clamped).

    ``body`` is a flat ModuleList: conv, act, (conv, act) * num_conv, conv.
    Only PReLU activations own parameters (``body.{odd}.weight``, shape [num_feat]).
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type="prelu"):
        super().__init__()
        self.upscale = upscale
        self.body = nn.ModuleList()
        self.body.append(nn.Conv2d(num_in_ch, num_feat, 3, 1, 1))
        self.body.append(_srvgg_act(act_type, num_feat))
        for _ in range(num_conv):
            self.body.append(nn.Conv2d(num_feat, num_feat, 3, 1, 1))
            self.body.append(_srvgg_act(act_type, num_feat))
        self.body.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x):
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


# --------------------------------------------------------------------------
# BasicSR layout: RRDBNet (ESRGAN, Real-ESRGAN x4plus / x2plus)
# --------------------------------------------------------------------------


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs with dense connections; x + 0.2 * conv5(cat(x, x1..x4))."""

    def __init__(self, num_feat=64, num_grow_ch=32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x):
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        x1 = act(self.conv1(x))
        x2 = act(self.conv2(torch.cat((x, x1), 1)))
        x3 = act(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = act(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat, num_grow_ch=32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """BasicSR RRDBNet. Input [0,1]. scale 2 / 1 pixel-unshuffle the input by 2 / 4 first."""

    def __init__(self, num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32):
        super().__init__()
        self.scale = scale
        if scale == 2:
            num_in_ch *= 4
        elif scale == 1:
            num_in_ch *= 16
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x):
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        if self.scale == 2:
            feat = F.pixel_unshuffle(x, 2)
        elif self.scale == 1:
            feat = F.pixel_unshuffle(x, 4)
        else:
            feat = x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = act(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = act(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(act(self.conv_hr(feat)))


def realesrgan_run(model, x, scale):
    """RealESRGANer's padding for the unshuffle models: reflect-pad bottom/right to a multiple of
    2 (x2) or 4 (x1), run, crop the output back to scale * size."""
    mod = {2: 2, 1: 4}.get(scale, 1)
    h, w = x.shape[2], x.shape[3]
    ph, pw = (-h) % mod, (-w) % mod
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    y = model(x)
    return y[:, :, : h * scale, : w * scale]


# --------------------------------------------------------------------------
# nunif layout: waifu2x UpConv7 and CUNet / UpCUNet
# --------------------------------------------------------------------------


class UpConv7(nn.Module):
    """Six valid 3x3 convs + LeakyReLU(0.1), ConvTranspose2d(k4, s2, p3). ``ch`` are the conv widths."""

    def __init__(self, ch=(16, 32, 64, 128, 128, 256)):
        super().__init__()
        layers, c = [], 3
        for o in ch:
            layers += [nn.Conv2d(c, o, 3, 1, 0), nn.LeakyReLU(0.1)]
            c = o
        layers.append(nn.ConvTranspose2d(c, 3, 4, 2, 3))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class SEBlock(nn.Module):
    def __init__(self, c, reduction=8):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c // reduction, 1, 1, 0, bias=True)
        self.conv2 = nn.Conv2d(c // reduction, c, 1, 1, 0, bias=True)

    def forward(self, x):
        z = F.adaptive_avg_pool2d(x, 1)
        z = torch.sigmoid(self.conv2(F.relu(self.conv1(z))))
        return x * z


class UNetConv(nn.Module):
    def __init__(self, cin, mid, out, se):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, mid, 3, 1, 0), nn.LeakyReLU(0.1),
                                  nn.Conv2d(mid, out, 3, 1, 0), nn.LeakyReLU(0.1))
        self.seblock = SEBlock(out) if se else None

    def forward(self, x):
        z = self.conv(x)
        return self.seblock(z) if self.seblock is not None else z


class UNet1(nn.Module):
    """``d`` divides nunif's channel counts (1 = the real model)."""

    def __init__(self, deconv, d=1):
        super().__init__()
        a, b, c = 32 // d, 64 // d, 128 // d
        self.conv1 = UNetConv(3, a, b, se=False)
        self.conv1_down = nn.Conv2d(b, b, 2, 2, 0)
        self.conv2 = UNetConv(b, c, b, se=True)
        self.conv2_up = nn.ConvTranspose2d(b, b, 2, 2, 0)
        self.conv3 = nn.Conv2d(b, b, 3, 1, 0)
        self.conv_bottom = nn.ConvTranspose2d(b, 3, 4, 2, 3) if deconv else nn.Conv2d(b, 3, 3, 1, 0)

    def forward(self, x):
        lr = lambda t: F.leaky_relu(t, 0.1)  # noqa: E731
        x1 = self.conv1(x)
        x2 = self.conv2(lr(self.conv1_down(x1)))
        x2 = lr(self.conv2_up(x2))
        x3 = lr(self.conv3(F.pad(x1, (-4, -4, -4, -4)) + x2))
        return self.conv_bottom(x3)


class UNet2(nn.Module):
    def __init__(self, d=1):
        super().__init__()
        a, b, c, e = 32 // d, 64 // d, 128 // d, 256 // d
        self.conv1 = UNetConv(3, a, b, se=False)
        self.conv1_down = nn.Conv2d(b, b, 2, 2, 0)
        self.conv2 = UNetConv(b, b, c, se=True)
        self.conv2_down = nn.Conv2d(c, c, 2, 2, 0)
        self.conv3 = UNetConv(c, e, c, se=True)
        self.conv3_up = nn.ConvTranspose2d(c, c, 2, 2, 0)
        self.conv4 = UNetConv(c, b, b, se=True)
        self.conv4_up = nn.ConvTranspose2d(b, b, 2, 2, 0)
        self.conv5 = nn.Conv2d(b, b, 3, 1, 0)
        self.conv_bottom = nn.Conv2d(b, 3, 3, 1, 0)

    def forward(self, x):
        lr = lambda t: F.leaky_relu(t, 0.1)  # noqa: E731
        x1 = self.conv1(x)
        x2 = self.conv2(lr(self.conv1_down(x1)))
        x3 = self.conv3(lr(self.conv2_down(x2)))
        x3 = lr(self.conv3_up(x3))
        x4 = self.conv4(F.pad(x2, (-4, -4, -4, -4)) + x3)
        x4 = lr(self.conv4_up(x4))
        x5 = lr(self.conv5(F.pad(x1, (-16, -16, -16, -16)) + x4))
        return self.conv_bottom(x5)


class CUNet(nn.Module):
    """UpCUNet (scale 2) or CUNet (scale 1), without nunif's clamps (as the ncnn graphs)."""

    def __init__(self, scale=2, d=1):
        super().__init__()
        self.unet1 = UNet1(deconv=scale == 2, d=d)
        self.unet2 = UNet2(d=d)

    def forward(self, x):
        z1 = self.unet1(x)
        return F.pad(z1, (-20, -20, -20, -20)) + self.unet2(z1)


# waifu2x-ncnn-vulkan's pre-padding and alignment per model
WAIFU2X_PAD = {"upconv7": (7, 1), "cunet2": (18, 2), "cunet1": (28, 4)}


def waifu2x_run(model, x, pad, align, scale):
    """Edge-replicate pad by ``pad`` (plus bottom/right to a multiple of ``align``), run, crop."""
    h, w = x.shape[2], x.shape[3]
    xp = F.pad(x, (pad, pad + (-w) % align, pad, pad + (-h) % align), mode="replicate")
    y = model(xp)
    return y[:, :, : h * scale, : w * scale]


# --------------------------------------------------------------------------
# safetensors (written/read by hand: 8-byte LE header length, JSON, raw LE data)
# --------------------------------------------------------------------------

_ST_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64"}


def write_safetensors(path, tensors, metadata=None):
    """Write ``{name: np.ndarray}`` as safetensors. Deterministic: names sorted."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        data = arr.tobytes()
        header[name] = {
            "dtype": _ST_DTYPES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hbytes = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    hbytes += b" " * ((-len(hbytes)) % 8)  # pad so tensor data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Inverse of ``write_safetensors`` (F32/F64 only). Returns (tensors, metadata)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    inv = {v: k for k, v in _ST_DTYPES.items()}
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + a:base + b], dtype=inv[info["dtype"]]).reshape(info["shape"])
    return out, meta
