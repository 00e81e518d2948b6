#!/usr/bin/env python3
"""Sanity-check the committed fixtures in tests/fixtures/models/ (developer tool, not CI).

    /work/venv/bin/python tools/check_fixtures.py

For every manifest case it:
  * loads the checkpoint with ``torch.load(weights_only=True)``, confirms the file
    format (zip vs legacy pickle) matches the manifest and picks ``state_dict_key``;
  * compares key names and shapes against an independent, hand-written table of the
    official layouts (derived from reading the upstream sources, not from our modules);
  * loads the weights ``strict=True`` into a fresh model, reruns the float64 forward
    and requires the stored ``output`` to be reproduced bit for bit;
  * re-reads the .safetensors file with the ``safetensors`` package when installed
    (cross-checks the hand-written writer) and checks ``input`` is in [0,1].
"""

import json
import math
import os
import sys
import zipfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srref import (  # noqa: E402
    MDSR, WAIFU2X_PAD, CUNet, EDSRBasicSR, EDSRPyTorch, RRDBNet, SRVGGNetCompact, UpConv7, read_safetensors,
    realesrgan_run, waifu2x_run,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "tests", "fixtures", "models")


def conv(keys, name, cin, cout, k):
    keys[f"{name}.weight"] = (cout, cin, k, k)
    keys[f"{name}.bias"] = (cout,)


def up_convs(prefix, scale, nf):
    """Upsampler convs sit at even Sequential indices (PixelShuffle in between)."""
    if scale == 3:
        return [(f"{prefix}.0", 9 * nf)]
    n = int(round(math.log2(scale)))
    return [(f"{prefix}.{2 * i}", 4 * nf) for i in range(n)]


def expected_keys(e):
    hp, k = e["hparams"], {}
    if e["arch"] == "edsr" and e["layout"] == "basicsr":
        nf = hp["num_feat"]
        conv(k, "conv_first", 3, nf, 3)
        for b in range(hp["num_block"]):
            conv(k, f"body.{b}.conv1", nf, nf, 3)
            conv(k, f"body.{b}.conv2", nf, nf, 3)
        conv(k, "conv_after_body", nf, nf, 3)
        for name, cout in up_convs("upsample", hp["upscale"], nf):
            conv(k, name, nf, cout, 3)
        conv(k, "conv_last", nf, 3, 3)
    elif e["arch"] == "edsr":
        nf = hp["n_feats"]
        conv(k, "sub_mean", 3, 3, 1)
        conv(k, "add_mean", 3, 3, 1)
        conv(k, "head.0", 3, nf, 3)
        for b in range(hp["n_resblocks"]):
            conv(k, f"body.{b}.body.0", nf, nf, 3)
            conv(k, f"body.{b}.body.2", nf, nf, 3)
        conv(k, f"body.{hp['n_resblocks']}", nf, nf, 3)
        for name, cout in up_convs("tail.0", hp["scale"], nf):
            conv(k, name, nf, cout, 3)
        conv(k, "tail.1", nf, 3, 3)
    elif e["arch"] == "mdsr":
        nf = hp["n_feats"]
        conv(k, "sub_mean", 3, 3, 1)
        conv(k, "add_mean", 3, 3, 1)
        conv(k, "head.0", 3, nf, 3)
        for i, s in enumerate(hp["scales"]):
            for j in range(2):
                conv(k, f"pre_process.{i}.{j}.body.0", nf, nf, 5)
                conv(k, f"pre_process.{i}.{j}.body.2", nf, nf, 5)
            for name, cout in up_convs(f"upsample.{i}", s, nf):
                conv(k, name, nf, cout, 3)
        for b in range(hp["n_resblocks"]):
            conv(k, f"body.{b}.body.0", nf, nf, 3)
            conv(k, f"body.{b}.body.2", nf, nf, 3)
        conv(k, f"body.{hp['n_resblocks']}", nf, nf, 3)
        conv(k, "tail.0", nf, 3, 3)
    elif e["arch"] == "srvgg_compact":
        nf, nc, s = hp["num_feat"], hp["num_conv"], hp["upscale"]
        conv(k, "body.0", 3, nf, 3)
        for i in range(nc):
            conv(k, f"body.{2 + 2 * i}", nf, nf, 3)
        conv(k, f"body.{2 + 2 * nc}", nf, 3 * s * s, 3)
        if hp["act_type"] == "prelu":
            for i in range(nc + 1):
                k[f"body.{1 + 2 * i}.weight"] = (nf,)
    elif e["arch"] == "rrdb":
        nf, g, nb, s = hp["num_feat"], hp["num_grow_ch"], hp["num_block"], hp["scale"]
        conv(k, "conv_first", 3 * {4: 1, 2: 4, 1: 16}[s], nf, 3)
        for b in range(nb):
            for r in (1, 2, 3):
                for m in range(1, 6):
                    conv(k, f"body.{b}.rdb{r}.conv{m}", nf + (m - 1) * g, g if m < 5 else nf, 3)
        for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
            conv(k, name, nf, nf, 3)
        conv(k, "conv_last", nf, 3, 3)
        if e["layout"] == "esrgan":
            ren = {"conv_first": "model.0", "conv_body": f"model.1.sub.{nb}", "conv_up1": "model.3",
                   "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
            old = {}
            for key, shape in k.items():
                mod, p = key.rsplit(".", 1)
                if mod.startswith("body."):
                    _, i, rdb, cv = mod.split(".")
                    old[f"model.1.sub.{i}.{rdb.upper()}.{cv}.0.{p}"] = shape
                else:
                    old[f"{ren[mod]}.{p}"] = shape
            k = old
    elif e["arch"] == "upconv7":
        ch = [3, 4, 8, 8, 16, 16, 8]
        for i in range(6):
            conv(k, f"net.{2 * i}", ch[i], ch[i + 1], 3)
        k["net.12.weight"], k["net.12.bias"] = (ch[-1], 3, 4, 4), (3,)
    elif e["arch"] == "cunet":
        d = 8
        a, b, c, f = 32 // d, 64 // d, 128 // d, 256 // d

        def unet_conv(p, cin, mid, out, se):
            conv(k, f"{p}.conv.0", cin, mid, 3)
            conv(k, f"{p}.conv.2", mid, out, 3)
            if se:
                conv(k, f"{p}.seblock.conv1", out, out // 8, 1)
                conv(k, f"{p}.seblock.conv2", out // 8, out, 1)

        def up(name, cin, cout, kk):
            k[f"{name}.weight"], k[f"{name}.bias"] = (cin, cout, kk, kk), (cout,)

        unet_conv("unet1.conv1", 3, a, b, False)
        conv(k, "unet1.conv1_down", b, b, 2)
        unet_conv("unet1.conv2", b, c, b, True)
        up("unet1.conv2_up", b, b, 2)
        conv(k, "unet1.conv3", b, b, 3)
        if e["scale"] == 2:
            up("unet1.conv_bottom", b, 3, 4)
        else:
            conv(k, "unet1.conv_bottom", b, 3, 3)
        unet_conv("unet2.conv1", 3, a, b, False)
        conv(k, "unet2.conv1_down", b, b, 2)
        unet_conv("unet2.conv2", b, b, c, True)
        conv(k, "unet2.conv2_down", c, c, 2)
        unet_conv("unet2.conv3", c, f, c, True)
        up("unet2.conv3_up", c, c, 2)
        unet_conv("unet2.conv4", c, b, b, True)
        up("unet2.conv4_up", b, b, 2)
        conv(k, "unet2.conv5", b, b, 3)
        conv(k, "unet2.conv_bottom", b, 3, 3)
    else:
        raise ValueError(e["arch"])
    return k


def build(e):
    hp = e["hparams"]
    if e["arch"] == "edsr" and e["layout"] == "basicsr":
        return EDSRBasicSR(num_feat=hp["num_feat"], num_block=hp["num_block"], upscale=hp["upscale"],
                           res_scale=hp["res_scale"], img_range=hp.get("img_range", 255.0),
                           rgb_mean=hp.get("rgb_mean", (0.4488, 0.4371, 0.4040)))
    if e["arch"] == "edsr":
        return EDSRPyTorch(n_feats=hp["n_feats"], n_resblocks=hp["n_resblocks"], scale=hp["scale"],
                           res_scale=hp["res_scale"], rgb_range=hp["rgb_range"])
    if e["arch"] == "mdsr":
        m = MDSR(n_feats=hp["n_feats"], n_resblocks=hp["n_resblocks"], scales=hp["scales"],
                 rgb_range=hp["rgb_range"])
        m.scale_idx = hp["scale_idx"]
        return m
    if e["arch"] == "srvgg_compact":
        return SRVGGNetCompact(num_feat=hp["num_feat"], num_conv=hp["num_conv"], upscale=hp["upscale"],
                               act_type=hp["act_type"])
    if e["arch"] == "rrdb":
        m = RRDBNet(**hp)
        return Runner(m, lambda mm, x: realesrgan_run(mm, x, hp["scale"]))
    if e["arch"] == "upconv7":
        return Runner(UpConv7(ch=(4, 8, 8, 16, 16, 8)), lambda mm, x: waifu2x_run(mm, x, 7, 1, 2))
    if e["arch"] == "cunet":
        key = f"cunet{e['scale']}"
        pad, align = WAIFU2X_PAD[key]
        return Runner(CUNet(scale=e["scale"], d=8), lambda mm, x: waifu2x_run(mm, x, pad, align, e["scale"]))
    raise ValueError(e["arch"])


class Runner(torch.nn.Module):
    """A model with the padding its upstream runner applies; loads the inner model's state dict."""

    def __init__(self, model, run):
        super().__init__()
        self.model, self.run = model, run

    def load_state_dict(self, sd, strict=True):
        return self.model.load_state_dict(sd, strict=strict)

    def forward(self, x):
        return self.run(self.model, x)


def main():
    try:
        from safetensors.numpy import load_file as st_load
    except ImportError:
        st_load = None
        print("note: safetensors package not installed; skipping the cross-read")
    manifest = json.load(open(os.path.join(FIX, "manifest.json")))
    failures = 0
    for e in manifest:
        path = os.path.join(FIX, e["checkpoint"])
        if e["checkpoint_format"].startswith(("ncnn", "safetensors-from-")):
            # ncnn files are written by tools/ncnn_write.py (layout checked by ../shared/tools/ncnn_inspect.py);
            # idealo cases are converter output with a numpy reference. The Rust tests check both.
            print(f"skip {e['case']:16s} ({e['checkpoint_format']})")
            continue
        is_zip = zipfile.is_zipfile(path)
        assert is_zip == (e["checkpoint_format"] == "torch-zip"), (e["case"], is_zip)
        obj = torch.load(path, map_location="cpu", weights_only=True)
        sd = obj if e["state_dict_key"] is None else obj[e["state_dict_key"]]
        want = expected_keys(e)
        if e["layout"] == "esrgan":
            # Same weights as rrdb_x4 under the old names: rename back to load them.
            back = {"model.0": "conv_first", "model.3": "conv_up1", "model.6": "conv_up2", "model.8": "conv_hr",
                    "model.10": "conv_last", f"model.1.sub.{e['hparams']['num_block']}": "conv_body"}
            new = {}
            for key, v in sd.items():
                mod, p = key.rsplit(".", 1)
                if mod in back:
                    new[f"{back[mod]}.{p}"] = v
                else:
                    _, _, _, i, rdb, cv, _ = mod.split(".")
                    new[f"body.{i}.{rdb.lower()}.{cv}.{p}"] = v
            got = {kk: tuple(v.shape) for kk, v in sd.items()}
            assert got == want, e["case"]
            sd = new
            want = {kk: tuple(v.shape) for kk, v in new.items()}
        got = {k: tuple(v.shape) for k, v in sd.items()}
        assert got == want, (e["case"], sorted(set(got) ^ set(want)),
                             {k: (got.get(k), want.get(k)) for k in want if got.get(k) != want.get(k)})
        assert all(v.dtype == torch.float32 for v in sd.values())

        tensors, meta = read_safetensors(os.path.join(FIX, e["reference"]))
        x, y = tensors["input"], tensors["output"]
        assert x.dtype == np.float32 and y.dtype == np.float32
        assert list(x.shape) == e["input_shape"] and list(y.shape) == e["output_shape"]
        n, c, h, w = x.shape
        assert (n, c) == (1, 3) and list(y.shape) == [1, 3, h * e["scale"], w * e["scale"]]
        assert 0.0 <= x.min() and x.max() <= 1.0
        if st_load is not None:
            other = st_load(os.path.join(FIX, e["reference"]))
            assert set(other) == {"input", "output"}
            assert np.array_equal(other["input"], x) and np.array_equal(other["output"], y)

        model = build(e).double().eval()
        model.load_state_dict(sd, strict=True)
        xt = torch.from_numpy(x.copy())
        if e["input_range"] == 255:
            xt = xt * 255.0  # float32 multiply, as the generator did
        with torch.no_grad():
            ref = model(xt.double()).float().numpy()
        exact = np.array_equal(ref, y)
        # sanity: the network path matters (output is not just the mean / the nearest-upsampled input)
        if e["arch"] == "srvgg_compact":
            base = np.repeat(np.repeat(x, e["scale"], axis=2), e["scale"], axis=3)
            spread = float(np.std(y - base))
        else:
            spread = float(np.std(y)) / e["output_range"]
        ok = exact and spread > 0.05
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {e['case']:16s} keys={len(got):3d} exact={exact} "
              f"spread={spread:.3f} fmt={e['checkpoint_format']} key={e['state_dict_key']}")
    print(f"{len(manifest) - failures}/{len(manifest)} cases ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
