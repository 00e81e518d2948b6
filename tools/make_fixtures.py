#!/usr/bin/env python3
"""Generate small PyTorch reference fixtures for the Rust model-parity tests.

Developer tool only: CI never runs this and the product never depends on PyTorch.
Run from the repository root:

    /work/venv/bin/python tools/make_fixtures.py            # (re)write tests/fixtures/models/
    /work/venv/bin/python tools/make_fixtures.py --check    # regenerate in a temp dir, compare bytes

For every case it writes the checkpoint file exactly as users have it (BasicSR
``{'params': ...}`` dicts, EDSR-PyTorch plain state dicts, one legacy-format
pickle), a ``<case>.safetensors`` with float32 ``input`` (NCHW [1,3,H,W], values
in [0,1]) and ``output`` (NCHW, in the model's own output range), and
``manifest.json`` describing all cases.

The reference ``output`` is the PyTorch forward pass computed in float64 (weights
are the float32 checkpoint values, upcast exactly) and rounded to float32, so it
is the best available answer rather than one particular float32 accumulation
order. ``torch_f32_max_abs_diff`` in the manifest records how far PyTorch's own
float32 forward lands from it, as a yardstick for the Rust tolerance.
"""

import argparse
import copy
import filecmp
import json
import math
import os
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srref import (  # noqa: E402
    MDSR,
    RGB_MEAN,
    EDSRBasicSR,
    EDSRPyTorch,
    MeanShift,
    CUNet,
    RRDBNet,
    SRVGGNetCompact,
    UpConv7,
    WAIFU2X_PAD,
    realesrgan_run,
    waifu2x_run,
    write_safetensors,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "models")


# --------------------------------------------------------------------------
# Deterministic random weights
# --------------------------------------------------------------------------


@torch.no_grad()
def randomize(model, seed, gain=1.0, bias_std=0.1, prelu_range=(-0.2, 0.5)):
    """Fill every conv / PReLU with seeded random values (MeanShift left as built).

    Conv weights ~ N(0, gain^2 / fan_in), so activations stay O(input); biases
    ~ N(0, bias_std^2) (non-zero so bias handling is exercised). PReLU slopes are
    drawn per channel from ``prelu_range`` (the PyTorch default of 0.25 for every
    channel would not catch a per-channel vs shared slope mix-up).
    """
    g = torch.Generator().manual_seed(seed)
    for _, m in model.named_modules():
        if isinstance(m, MeanShift):
            continue
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (gain / math.sqrt(fan_in)))
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * bias_std)
        elif isinstance(m, nn.PReLU):
            lo, hi = prelu_range
            m.weight.copy_(lo + (hi - lo) * torch.rand(m.weight.shape, generator=g))


def make_input(seed, h, w):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g)


@torch.no_grad()
def forward_pair(model, x_net):
    """Return (float64 reference rounded to f32, float32 torch forward)."""
    model.eval()
    y32 = model.float()(x_net.float()).clone()
    y64 = model.double()(x_net.double()).float()
    model.float()
    return y64, y32


def state_dict_f32(model):
    """A detached copy of ``model.state_dict()``, keeping it an OrderedDict with its ``_metadata``
    attribute, as real BasicSR / EDSR-PyTorch checkpoints have (pickled as REDUCE + BUILD)."""
    sd = model.state_dict()
    out = OrderedDict((k, v.detach().clone().float().contiguous()) for k, v in sd.items())
    out._metadata = copy.deepcopy(sd._metadata)
    return out


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------


def edsr_basicsr_cases():
    specs = [
        # case,              scale, blocks, res_scale, seed, (H, W), ema
        ("edsr_basicsr_x2", 2, 2, 1.0, 101, (11, 13), False),
        ("edsr_basicsr_x3", 3, 2, 0.1, 102, (9, 14), False),
        ("edsr_basicsr_x4", 4, 3, 1.0, 103, (13, 10), True),
    ]
    for case, scale, nb, rs, seed, (h, w), ema in specs:
        hp = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=nb, upscale=scale,
                  res_scale=rs, img_range=255.0, rgb_mean=list(RGB_MEAN))
        model = EDSRBasicSR(num_feat=8, num_block=nb, upscale=scale, res_scale=rs)
        # Features live at 255 scale here ((x - mean) * 255), so biases are drawn at that scale too.
        randomize(model, seed, gain=1.0, bias_std=0.1 * 255)
        params = state_dict_f32(model)
        ckpt = {"params": params}
        key = "params"
        if ema:
            ema_model = EDSRBasicSR(num_feat=8, num_block=nb, upscale=scale, res_scale=rs)
            randomize(ema_model, seed + 1000, gain=1.0, bias_std=0.1 * 255)
            ckpt["params_ema"] = state_dict_f32(ema_model)
            model, key = ema_model, "params_ema"
        x = make_input(seed, h, w)
        ref, y32 = forward_pair(model, x)
        notes = [
            "BasicSR EDSR: x=(x-mean)*img_range; conv_first; res=conv_after_body(body(x))+x; "
            "x=conv_last(upsample(res)); x=x/img_range+mean. mean/img_range are not in the checkpoint.",
            "ResidualBlockNoBN: x + conv2(relu(conv1(x)))*res_scale.",
        ]
        if rs != 1.0:
            notes.append(f"res_scale={rs} is not stored in the checkpoint; running with res_scale=1 gives a "
                         "clearly different output (see res_scale_1_max_abs_diff).")
        if ema:
            notes.append("Checkpoint holds both 'params' and 'params_ema' with different random weights; the "
                         "reference output uses 'params_ema' (what BasicSR-style loaders prefer).")
        extra = {}
        if rs != 1.0:
            alt = EDSRBasicSR(num_feat=8, num_block=nb, upscale=scale, res_scale=1.0)
            alt.load_state_dict(params, strict=True)
            alt_ref, _ = forward_pair(alt, x)
            extra["res_scale_1_max_abs_diff"] = float((alt_ref - ref).abs().max())
        if ema:
            alt = EDSRBasicSR(num_feat=8, num_block=nb, upscale=scale, res_scale=rs)
            alt.load_state_dict(params, strict=True)
            alt_ref, _ = forward_pair(alt, x)
            extra["params_vs_params_ema_max_abs_diff"] = float((alt_ref - ref).abs().max())
        yield dict(
            case=case, arch="edsr", layout="basicsr", checkpoint=f"{case}.pth",
            checkpoint_format="torch-zip", scale=scale, hparams=hp,
            input_range=1, output_range=1,
            needs_params={"res_scale": rs, "img_range": 255.0, "rgb_mean": list(RGB_MEAN)},
            state_dict_key=key, notes=" ".join(notes), seed=seed, **extra,
        ), ckpt, x, ref, y32, {}


def edsr_pytorch_cases():
    specs = [
        # case,           scale, res_scale, seed, (H, W), legacy
        ("edsr_pt_x2", 2, 1.0, 201, (12, 9), False),
        ("edsr_pt_x3", 3, 1.0, 202, (7, 11), True),
        ("edsr_pt_x4", 4, 0.1, 203, (10, 13), False),
    ]
    for case, scale, rs, seed, (h, w), legacy in specs:
        hp = dict(n_colors=3, n_feats=8, n_resblocks=2, scale=scale, res_scale=rs, rgb_range=255,
                  rgb_mean=list(RGB_MEAN), rgb_std=[1.0, 1.0, 1.0])
        model = EDSRPyTorch(n_feats=8, n_resblocks=2, scale=scale, res_scale=rs, rgb_range=255)
        randomize(model, seed, gain=1.0, bias_std=0.1 * 255)
        sd = state_dict_f32(model)
        x = make_input(seed, h, w)
        ref, y32 = forward_pair(model, x * 255.0)
        notes = [
            "EDSR-PyTorch EDSR: input and output in [0,255] (the stored 'input' is [0,1]; torch was fed input*255 "
            "computed in float32). sub_mean/add_mean are 1x1 convs stored in the checkpoint "
            "(weight eye(3)/std, bias -/+ rgb_range*mean/std).",
            "ResBlock: body.{0,2} convs with ReLU between; out = body(x)*res_scale + x. "
            "body.{n_resblocks} is the trunk-closing conv; long skip adds head output. "
            "tail.0 is the Upsampler (convs at tail.0.0 and, for x4, tail.0.2), tail.1 the final conv.",
        ]
        extra = {}
        if rs != 1.0:
            alt = EDSRPyTorch(n_feats=8, n_resblocks=2, scale=scale, res_scale=1.0, rgb_range=255)
            alt.load_state_dict(sd, strict=True)
            alt_ref, _ = forward_pair(alt, x * 255.0)
            extra["res_scale_1_max_abs_diff"] = float((alt_ref - ref).abs().max())
            notes.append(f"res_scale={rs} (as in the official large EDSR) is not stored in the checkpoint.")
        if legacy:
            notes.append("Checkpoint written with _use_new_zipfile_serialization=False (legacy pickle format).")
        yield dict(
            case=case, arch="edsr", layout="edsr-pytorch", checkpoint=f"{case}.pt",
            checkpoint_format="torch-legacy" if legacy else "torch-zip", scale=scale, hparams=hp,
            input_range=255, output_range=255,
            needs_params={"res_scale": rs, "rgb_range": 255},
            state_dict_key=None, notes=" ".join(notes), seed=seed, **extra,
        ), sd, x, ref, y32, {"legacy": legacy}


def mdsr_cases():
    seed = 301
    scales = (2, 3, 4)
    model = MDSR(n_feats=8, n_resblocks=2, scales=scales, rgb_range=255)
    randomize(model, seed, gain=1.0, bias_std=0.1 * 255)
    sd = state_dict_f32(model)
    sizes = {2: (11, 8), 3: (9, 10), 4: (8, 11)}
    first = True
    for idx, s in enumerate(scales):
        case = f"mdsr_x{s}"
        model.scale_idx = idx
        h, w = sizes[s]
        x = make_input(seed + s, h, w)
        ref, y32 = forward_pair(model, x * 255.0)
        hp = dict(n_colors=3, n_feats=8, n_resblocks=2, scales=list(scales), scale_idx=idx, rgb_range=255,
                  rgb_mean=list(RGB_MEAN), rgb_std=[1.0, 1.0, 1.0])
        notes = ("EDSR-PyTorch MDSR, one checkpoint (mdsr.pt) shared by mdsr_x2/x3/x4. forward: sub_mean; head.0; "
                 "pre_process[i] (two ResBlocks with 5x5 convs, padding 2, res_scale 1); res=body(x)+x "
                 "(body = ResBlocks + closing conv); upsample[i]; tail.0 conv; add_mean. "
                 f"This case runs scale {s} = index {idx} of scales {list(scales)}. Input/output in [0,255].")
        yield dict(
            case=case, arch="mdsr", layout="edsr-pytorch", checkpoint="mdsr.pt",
            checkpoint_format="torch-zip", scale=s, hparams=hp,
            input_range=255, output_range=255,
            needs_params={"rgb_range": 255},
            state_dict_key=None, notes=notes, seed=seed,
        ), (sd if first else None), x, ref, y32, {}
        first = False


def srvgg_cases():
    specs = [
        # case,               scale, num_conv, act,        seed, (H, W)
        ("srvgg_x4", 4, 3, "prelu", 401, (11, 9)),
        ("srvgg_x2", 2, 2, "prelu", 402, (13, 12)),
        ("srvgg_x3", 3, 2, "prelu", 403, (10, 7)),
        ("srvgg_x4_lrelu", 4, 2, "leakyrelu", 404, (9, 12)),
    ]
    for case, scale, nc, act, seed, (h, w) in specs:
        hp = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=nc, upscale=scale, act_type=act)
        model = SRVGGNetCompact(num_feat=8, num_conv=nc, upscale=scale, act_type=act)
        randomize(model, seed, gain=1.0, bias_std=0.1)
        sd = state_dict_f32(model)
        x = make_input(seed, h, w)
        ref, y32 = forward_pair(model, x)
        notes = ("Real-ESRGAN SRVGGNetCompact: body = conv, act, (conv, act)*num_conv, conv(num_feat -> 3*s*s); "
                 "PixelShuffle(s); plus F.interpolate(input, scale_factor=s, mode='nearest'). Output not clamped. "
                 "Input [0,1].")
        needs = {}
        if act == "prelu":
            notes += " PReLU slopes are per channel (body.{odd}.weight, shape [num_feat])."
        else:
            notes += (" act_type='leakyrelu' (negative_slope 0.1): activations own no weights, so conv keys are "
                      "body.0, body.2, ... with odd indices absent; relu vs leakyrelu cannot be told apart from "
                      "the checkpoint, hence needs_params.act_type.")
            needs["act_type"] = act
        yield dict(
            case=case, arch="srvgg_compact", layout="realesrgan", checkpoint=f"{case}.pth",
            checkpoint_format="torch-zip", scale=scale, hparams=hp,
            input_range=1, output_range=1,
            needs_params=needs, state_dict_key="params", notes=notes, seed=seed,
        ), {"params": sd}, x, ref, y32, {}


class RealEsrganRun(nn.Module):
    """A model run the way RealESRGANer runs it (reflect padding for the unshuffle scales)."""

    def __init__(self, model, scale):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return realesrgan_run(self.model, x, self.scale)


def rrdb_cases():
    specs = [
        # case,       scale, blocks, seed, (H, W): x2/x1 sizes are not multiples of 2/4 on purpose
        ("rrdb_x4", 4, 2, 501, (9, 11)),
        ("rrdb_x2", 2, 1, 502, (10, 13)),
        ("rrdb_x1", 1, 1, 503, (12, 9)),
    ]
    for case, scale, nb, seed, (h, w) in specs:
        hp = dict(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=8, num_block=nb, num_grow_ch=4)
        model = RRDBNet(**hp)
        randomize(model, seed, gain=1.0, bias_std=0.1)
        sd = state_dict_f32(model)
        x = make_input(seed, h, w)
        ref, y32 = forward_pair(RealEsrganRun(model, scale), x)
        notes = ("BasicSR RRDBNet: conv_first; body = RRDBs of three ResidualDenseBlocks (5 convs, dense "
                 "concatenation, LeakyReLU 0.2, x + 0.2*conv5); RRDB out = x + 0.2*rdb3(rdb2(rdb1(x))); "
                 "feat + conv_body(body(feat)); two nearest x2 + conv + LeakyReLU stages; conv_hr + LeakyReLU; "
                 "conv_last. Checkpoint under 'params_ema' as Real-ESRGAN ships it.")
        if scale != 4:
            notes += (f" scale {scale}: input pixel-unshuffled by {4 // scale}; the input is reflect-padded "
                      f"bottom/right to a multiple of {4 // scale} and the output cropped (RealESRGANer.pre_process).")
        yield dict(
            case=case, arch="rrdb", layout="basicsr", checkpoint=f"{case}.pth",
            checkpoint_format="torch-zip", scale=scale, hparams=hp,
            input_range=1, output_range=1, needs_params={}, state_dict_key="params_ema",
            notes=notes, seed=seed,
        ), {"params_ema": sd}, x, ref, y32, {}
        if scale == 4:
            # The same weights under the original ESRGAN repository's names.
            old = OrderedDict()
            ren = {"conv_first": "model.0", "conv_body": f"model.1.sub.{nb}", "conv_up1": "model.3",
                   "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
            for k, v in sd.items():
                mod, p = k.rsplit(".", 1)
                if mod.startswith("body."):
                    _, i, rdb, conv = mod.split(".")
                    name = f"model.1.sub.{i}.{rdb.upper()}.{conv}.0"
                else:
                    name = ren[mod]
                old[f"{name}.{p}"] = v
            yield dict(
                case="rrdb_esrgan_x4", arch="rrdb", layout="esrgan", checkpoint="rrdb_esrgan_x4.pth",
                checkpoint_format="torch-zip", scale=4, hparams=hp, input_range=1, output_range=1,
                needs_params={}, state_dict_key=None, seed=seed,
                notes="rrdb_x4's weights under the original ESRGAN names (model.0, model.1.sub.N.RDBk.convm.0, "
                      "model.1.sub.<N> = conv_body, model.3/6 = up convs, model.8 = HR conv, model.10 = last).",
            ), old, x, ref, y32, {}


class Waifu2xRun(nn.Module):
    def __init__(self, model, pad, align, scale):
        super().__init__()
        self.model, self.pad, self.align, self.scale = model, pad, align, scale

    def forward(self, x):
        return waifu2x_run(self.model, x, self.pad, self.align, self.scale)


def waifu2x_cases():
    specs = [
        # case,            model,                                     key,       scale, seed, (H, W)
        ("upconv7", lambda: UpConv7(ch=(4, 8, 8, 16, 16, 8)), "upconv7", 2, 601, (9, 11)),
        ("cunet_x2", lambda: CUNet(scale=2, d=8), "cunet2", 2, 602, (10, 7)),
        ("cunet_x1", lambda: CUNet(scale=1, d=8), "cunet1", 1, 603, (6, 9)),
    ]
    for case, make, key, scale, seed, (h, w) in specs:
        model = make()
        randomize(model, seed, gain=1.0, bias_std=0.1)
        sd = state_dict_f32(model)
        pad, align = WAIFU2X_PAD[key]
        x = make_input(seed, h, w)
        ref, y32 = forward_pair(Waifu2xRun(model, pad, align, scale), x)
        notes = (f"nunif layout, random weights with reduced widths. Input edge-replicated by {pad} px (plus "
                 f"bottom/right to a multiple of {align}) as waifu2x-ncnn-vulkan does, output cropped to "
                 f"{scale}x the input. No clamping (the ncnn graphs have none).")
        if key.startswith("cunet"):
            notes += (" CUNet: UNet1 (UNetConv, 2x2 s2 down conv, UNetConv with SE, 2x2 s2 up, crop-4 skip, conv, "
                      "then k4 s2 p3 transposed conv for x2 or a 3x3 conv for x1), UNet2 (three levels, SE, crops "
                      "4 and 16), z = crop(unet1, 20) + unet2(unet1). SE = x * sigmoid(conv2(relu(conv1(mean))))")
        yield dict(
            case=case, arch="upconv7" if key == "upconv7" else "cunet", layout="nunif",
            checkpoint=f"{case}.pth", checkpoint_format="torch-zip", scale=scale,
            hparams={"pre_padding": pad, "align": align},
            input_range=1, output_range=1, needs_params={}, state_dict_key=None, notes=notes, seed=seed,
        ), sd, x, ref, y32, {}


def ncnn_cases():
    """Models of the cases above re-created from their seeds and written as ncnn files (fp16 conv
    weights like the released models; fp32 for one). References use the weights as stored."""
    import ncnn_write

    specs = [
        # case,           make,                                          seed, scale, (H, W), pad/align, half
        ("srvgg_x4_ncnn", lambda: SRVGGNetCompact(num_feat=8, num_conv=3, upscale=4), 401, 4, (11, 9), None, False),
        ("rrdb_x4_ncnn", lambda: RRDBNet(scale=4, num_feat=8, num_block=2, num_grow_ch=4), 501, 4, (9, 11), None, True),
        ("upconv7_ncnn", lambda: UpConv7(ch=(4, 8, 8, 16, 16, 8)), 601, 2, (9, 11), "upconv7", True),
        ("cunet_x2_ncnn", lambda: CUNet(scale=2, d=8), 602, 2, (10, 7), "cunet2", True),
    ]
    for case, make, seed, scale, (h, w), pad_key, half in specs:
        model = make()
        randomize(model, seed, gain=1.0, bias_std=0.1)
        sd = state_dict_f32(model)
        if half:
            sd = ncnn_write.half_rounded(sd, keep_fp32=lambda n: "seblock" in n)
            model.load_state_dict(sd, strict=True)
        if case.startswith("srvgg"):
            net = ncnn_write.srvgg(sd, scale, half)
        elif case.startswith("rrdb"):
            net = ncnn_write.rrdb(sd, 2, half)
        elif case.startswith("upconv7"):
            net = ncnn_write.upconv7(sd, half)
        else:
            net = ncnn_write.cunet(sd, 2, half)
        net.write(os.path.join(_OUT, f"{case}.param"), os.path.join(_OUT, f"{case}.bin"))
        x = make_input(seed, h, w)
        run = model if pad_key is None else Waifu2xRun(model, *WAIFU2X_PAD[pad_key], scale)
        ref, y32 = forward_pair(run, x)
        yield dict(
            case=case, arch=case.split("_")[0], layout="ncnn", checkpoint=f"{case}.param",
            checkpoint_format="ncnn-fp16" if half else "ncnn-fp32", scale=scale, hparams={},
            input_range=1, output_range=1, needs_params={}, state_dict_key=None, seed=seed,
            notes="Written by tools/ncnn_write.py from the random weights of the case of the same seed, laid out as "
                  "the released ncnn models are; " + ("conv weights fp16 (the reference uses the fp16-rounded "
                  "weights; SE InnerProduct weights stay fp32)" if half else "all weights fp32 (tag 0)") + ".",
        ), None, x, ref, y32, {}


def keras_weights(rng, layers):
    """Random Keras conv weights {name: {kernel: HWIO, bias}} for [(name, k, cin, cout)]."""
    w = {}
    for name, k, cin, cout in layers:
        w[name] = {"kernel": (rng.standard_normal((k, k, cin, cout)) / math.sqrt(k * k * cin)).astype(np.float32),
                   "bias": (rng.standard_normal(cout) * 0.1).astype(np.float32)}
    return w


def rdn_layers(C, D, G, G0, scale, shuffle, up=(8, 4)):
    L = [("F_m1", 3, 3, G0), ("F_0", 3, G0, G0)]
    for d in range(1, D + 1):
        for c in range(1, C + 1):
            L.append((f"F_{d}_{c}", 3, G0 + (c - 1) * G, G))
        L.append((f"LFF_{d}", 1, G0 + C * G, G0))
    L += [("GFF_1", 1, D * G0, G0), ("GFF_2", 3, G0, G0), ("UPN1", 5, G0, up[0]), ("UPN2", 3, up[0], up[1]),
          ("UPN3", 3, up[1], 3 * scale * scale), ("SR", 3, 3 if shuffle else 3 * scale * scale, 3)]
    return L


def rrdn_layers(C, D, T, G, G0, scale):
    L = [("Pre_blocks_conv", 3, 3, G0)]
    for t in range(1, T + 1):
        for d in range(1, D + 1):
            for c in range(1, C + 1):
                L.append((f"F_{t}_{d}_{c}", 3, G0 + (c - 1) * G, G))
            L.append((f"LFF_{t}_{d}", 3, G0 + C * G, G0))
    L += [("post_blocks_conv", 3, G0, G0), ("PreShuffle", 3, G0, 3 * scale * scale), ("SR", 3, 3, 3)]
    return L


def write_h5(path, w):
    """A Keras HDF5 full-model-style weight file: model_weights/<layer>/<layer>/{kernel,bias}:0."""
    import h5py

    with h5py.File(path, "w") as f:
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [n.encode() for n in w]
        for n, t in w.items():
            lg = g.create_group(n)
            lg.attrs["weight_names"] = [f"{n}/kernel:0".encode(), f"{n}/bias:0".encode()]
            lg.create_dataset(f"{n}/kernel:0", data=t["kernel"])
            lg.create_dataset(f"{n}/bias:0", data=t["bias"])


def write_tfjs_uint8(dirpath, w):
    """A TF.js layers model with every weight uint8-quantised per tensor; returns the dequantised
    weights (what a reader must recover)."""
    manifest, shard, deq = [], b"", {}
    for n, t in w.items():
        deq[n] = {}
        for leaf in ("kernel", "bias"):
            a = t[leaf].astype(np.float64)
            lo, hi = float(a.min()), float(a.max())
            scale = (hi - lo) / 255.0 if hi > lo else 1.0
            q = np.clip(np.round((a - lo) / scale), 0, 255).astype(np.uint8)
            shard += q.tobytes()
            manifest.append({"name": f"{n}/{leaf}", "shape": list(a.shape), "dtype": "float32",
                             "quantization": {"dtype": "uint8", "scale": scale, "min": lo}})
            deq[n][leaf] = (q.astype(np.float64) * scale + lo).astype(np.float32)
    with open(os.path.join(dirpath, "group1-shard1of1.bin"), "wb") as f:
        f.write(shard)
    with open(os.path.join(dirpath, "model.json"), "w") as f:
        json.dump({"format": "layers-model", "modelTopology": {},
                   "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": manifest}]}, f)
    return deq


def keras_cases():
    """idealo RDN / RRDN: random Keras weights written as .h5 or uint8 TF.js, converted by
    tools/convert_keras.py (the committed checkpoint), reference by the numpy Keras semantics of
    tools/keras_ref.py on the weights Keras would hold (dequantised for TF.js)."""
    import convert_keras
    import keras_ref

    specs = [
        # case,          kind,  params,                                                   fmt,    seed, (H, W)
        ("rdn_x2", "rdn", dict(C=2, D=3, G=4, G0=6, scale=2, shuffle=False), "h5", 701, (9, 11)),
        ("rdn_x3_shuffle", "rdn", dict(C=3, D=2, G=5, G0=4, scale=3, shuffle=True), "h5", 702, (8, 7)),
        ("rrdn_x4", "rrdn", dict(C=3, D=2, T=2, G=4, G0=6, scale=4), "tfjs", 703, (7, 9)),
    ]
    for case, kind, p, fmt, seed, (h, w_) in specs:
        rng = np.random.default_rng(seed)
        if kind == "rdn":
            layers = rdn_layers(p["C"], p["D"], p["G"], p["G0"], p["scale"], p["shuffle"])
        else:
            layers = rrdn_layers(p["C"], p["D"], p["T"], p["G"], p["G0"], p["scale"])
        w = keras_weights(rng, layers)
        with tempfile.TemporaryDirectory() as tmp:
            if fmt == "h5":
                src = os.path.join(tmp, "model.h5")
                write_h5(src, w)
            else:
                src = os.path.join(tmp, "model.json")
                w = write_tfjs_uint8(tmp, w)
            tensors, shuffled = convert_keras.convert(src)
        ckpt = f"{case}.keras.safetensors"
        convert_keras.write_state_dict(os.path.join(_OUT, ckpt), tensors,
                                       {"source": f"random {fmt}", "converted_by": "tools/convert_keras.py"})
        x = make_input(seed, h, w_)
        y = keras_ref.forward(x[0].permute(1, 2, 0).double().numpy(), w)
        y32 = keras_ref.forward(x[0].permute(1, 2, 0).numpy().astype(np.float32), w)
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))[None].astype(np.float32))  # noqa
        notes = (f"idealo {kind.upper()} with random weights (Keras layer names, HWIO kernels), written as "
                 f"{'a Keras .h5' if fmt == 'h5' else 'a TF.js model with uint8-quantised weights (q*scale+min)'} "
                 "and converted by tools/convert_keras.py; reference: numpy Keras semantics (tools/keras_ref.py, "
                 "float64) on the weights Keras holds.")
        if shuffled:
            notes += f" {shuffled} channels permuted from depth_to_space to pixel_shuffle order by the converter."
        yield dict(
            case=case, arch=kind, layout="idealo", checkpoint=ckpt, checkpoint_format=f"safetensors-from-{fmt}",
            scale=p["scale"], hparams=p, input_range=1, output_range=1, needs_params={}, state_dict_key=None,
            notes=notes, seed=seed,
        ), None, x, to_t(y), to_t(y32), {}


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def same_checkpoint(path, ckpt):
    """True if the checkpoint at ``path`` holds exactly the tensors of ``ckpt`` (flat or one level nested)."""
    try:
        other = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}/"))
            else:
                out[prefix + k] = v
        return out

    def shape_of(d):  # container types and _metadata must match too, not just the tensors
        return (type(d).__name__, getattr(d, "_metadata", None),
                {k: shape_of(v) for k, v in d.items() if isinstance(v, dict)})

    a, b = flat(ckpt), flat(other)
    return shape_of(ckpt) == shape_of(other) and a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a
    )


def cli_png_cases():
    """The x2 BasicSR EDSR checkpoint run on an 8-bit PNG, for the end-to-end CLI test: the
    reference is the forward pass on exactly the quantised pixels the PNG holds."""
    from PIL import Image

    case, seed, (h, w) = "edsr_basicsr_x2_png", 111, (12, 15)
    model = EDSRBasicSR(num_feat=8, num_block=2, upscale=2, res_scale=1.0)
    ckpt = torch.load(os.path.join(_OUT, "edsr_basicsr_x2.pth"), map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["params"], strict=True)
    # Weights scaled towards identity-like behaviour are not needed: the CLI clamps to [0,1], and the
    # test compares clamped values, so saturated pixels simply compare equal.
    q = torch.round(make_input(seed, h, w) * 255.0)
    x = q / 255.0
    png = f"{case}_input.png"
    Image.fromarray(q[0].permute(1, 2, 0).numpy().astype(np.uint8), "RGB").save(os.path.join(_OUT, png))
    ref, y32 = forward_pair(model, x)
    yield dict(
        case=case, arch="edsr", layout="basicsr", checkpoint="edsr_basicsr_x2.pth",
        checkpoint_format="torch-zip", scale=2,
        hparams=dict(num_feat=8, num_block=2, upscale=2, res_scale=1.0),
        input_range=1, output_range=1, needs_params={"res_scale": 1.0}, state_dict_key="params",
        png_input=png,
        notes="Same checkpoint as edsr_basicsr_x2, run on the 8-bit pixels of png_input (input = png/255).",
        seed=seed,
    ), None, x, ref, y32, {}


_OUT = DEFAULT_OUT  # where generate() is writing; cli_png_cases reads the x2 checkpoint back from it


def generate(out_dir):
    global _OUT
    _OUT = out_dir
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)  # nothing should draw from the global RNG; belt and braces
    manifest = []
    for gen in (edsr_basicsr_cases, edsr_pytorch_cases, mdsr_cases, srvgg_cases, cli_png_cases, rrdb_cases,
                waifu2x_cases, ncnn_cases, keras_cases):
        for entry, ckpt, x, ref, y32, opts in gen():
            if ckpt is not None:
                path = os.path.join(out_dir, entry["checkpoint"])
                if opts.get("legacy"):
                    # Legacy pickles key storages by CPython object address, so their bytes differ from run
                    # to run. Keep an existing file whose tensors are identical to avoid churn in git.
                    if not (os.path.exists(path) and same_checkpoint(path, ckpt)):
                        torch.save(ckpt, path, _use_new_zipfile_serialization=False)
                else:
                    torch.save(ckpt, path)
            ref_name = f"{entry['case']}.safetensors"
            write_safetensors(
                os.path.join(out_dir, ref_name),
                {"input": x.numpy().astype(np.float32), "output": ref.numpy().astype(np.float32)},
                metadata={"case": entry["case"], "generator": "tools/make_fixtures.py"},
            )
            entry["reference"] = ref_name
            entry["input_shape"] = list(x.shape)
            entry["output_shape"] = list(ref.shape)
            entry["reference_precision"] = "float64 forward rounded to float32"
            entry["torch_f32_max_abs_diff"] = float((y32 - ref).abs().max())
            entry["output_stats"] = {
                "min": float(ref.min()), "max": float(ref.max()),
                "mean": float(ref.mean()), "std": float(ref.std()),
            }
            manifest.append(entry)
    order = ["case", "arch", "layout", "checkpoint", "checkpoint_format", "state_dict_key", "scale", "hparams",
             "needs_params", "input_range", "output_range", "reference", "input_shape", "output_shape"]
    manifest = [{k: e[k] for k in order} | {k: v for k, v in e.items() if k not in order} for e in manifest]
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.write("\n")
    return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: tests/fixtures/models)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and verify it is byte-identical to --out")
    args = ap.parse_args()
    torch.set_num_threads(1)  # fixed reduction order for the f32 yardstick
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp)
            names = sorted(os.listdir(tmp))
            _, mismatch, errors = filecmp.cmpfiles(args.out, tmp, names, shallow=False)
            legacy = {e["checkpoint"] for e in json.load(open(os.path.join(tmp, "manifest.json")))
                      if e["checkpoint_format"] == "torch-legacy"}
            # legacy pickles are compared by content (their storage keys are object addresses)
            mismatch = [n for n in mismatch if not (n in legacy and same_checkpoint(
                os.path.join(args.out, n), torch.load(os.path.join(tmp, n), map_location="cpu", weights_only=True)))]
            extra = sorted(set(os.listdir(args.out)) - set(names))
            if mismatch or errors or extra:
                print(f"fixtures differ: mismatch={mismatch} missing={errors} extra={extra}")
                return 1
            print(f"{len(names)} files in {args.out} are identical to a fresh regeneration "
                  "(bytes; legacy pickles by tensor content)")
            return 0
    manifest = generate(args.out)
    total = 0
    for name in sorted(os.listdir(args.out)):
        size = os.path.getsize(os.path.join(args.out, name))
        total += size
        print(f"{size:9d}  {name}")
    print(f"{total:9d}  total ({len(manifest)} cases) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
