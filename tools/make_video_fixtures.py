#!/usr/bin/env python3
"""Small PyTorch reference fixtures for the video parts: deformable convolution (torchvision's
modulated/plain DCN and the original DCNv1 border rule), EDVR (TSA, no TSA, pre-deblur) and TDAN
(state dict and whole pickled module), with outputs for every frame of a short clip under each
temporal edge policy. Developer tool only; CI never runs it.

    /work/venv/bin/python tools/make_video_fixtures.py    # writes tests/fixtures/video/

References are computed in float64 from the stored (float32 or float16) weights and rounded to
float32. Tensors are NCHW in the safetensors files; `manifest.json` describes each case.
"""

import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srref import write_safetensors  # noqa: E402
from vsrref import EDVR, TDAN_VSR, basicsr_indices, dcnv1, tdan_indices  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "video")


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(g, *shape, std=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float64) * std


def offsets(g, n, h, w, span):
    """Half continuous, half on a quarter-pixel grid: the grid lands samples exactly on the border
    cases (h = -1, h = H - 1, ...) that the two rules treat differently."""
    cont = (torch.rand(1, n, h, w, generator=g, dtype=torch.float64) * 2 - 1) * span
    grid = torch.round(cont * 4) / 4
    pick = torch.rand(1, n, h, w, generator=g) < 0.5
    return torch.where(pick, grid, cont)


def dcn_cases():
    tensors, cases = {}, []
    g = gen(7)
    C, H, W, O, G = 16, 7, 9, 8, 4
    K = 9
    x = torch.rand(1, C, H, W, generator=g, dtype=torch.float64)
    wt = randn(g, O, C, 3, 3, std=0.2)
    bias = randn(g, O, std=0.1)
    off = offsets(g, 2 * G * K, H, W, 3.0)
    logits = randn(g, 1, G * K, H, W)
    y_mod = torchvision.ops.deform_conv2d(x, off, wt, bias, 1, 1, 1, torch.sigmoid(logits))
    y_plain = torchvision.ops.deform_conv2d(x, off, wt, None, 1, 1, 1, None)
    y_v1 = dcnv1(x, off, wt, 1, 1, G)
    for k, v in dict(x=x, weight=wt, bias=bias, offset=torch.cat([off, logits], 1),
                     tv_mod=y_mod, tv_plain=y_plain, v1=y_v1).items():
        tensors[k] = v.float().numpy()
    cases.append(dict(file="dcn.safetensors", groups=G, kernel=3, padding=1,
                      notes="offset holds 2*G*9 offsets (dy,dx interleaved, torchvision layout) then G*9 mask "
                            "logits; tv_mod = torchvision with mask=sigmoid(logits) and bias; tv_plain = "
                            "torchvision without mask or bias; v1 = the original DCNv1 border rule, no bias"))
    write_safetensors(os.path.join(OUT, "dcn.safetensors"), tensors, metadata={"generator": "tools/make_video_fixtures.py"})
    return cases


def randomize(model, seed, half):
    g = gen(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 4:
                fan = p.shape[1] * p.shape[2] * p.shape[3]
                std = 1.0 / fan ** 0.5
                if "conv_offset" in name or name.startswith("off2d"):
                    std *= 3.0  # offsets of a pixel or two: samples leave these tiny frames
                p.copy_(torch.randn(p.shape, generator=g) * std)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        if half:
            for p in model.parameters():
                p.copy_(p.half().float())
    return model


def clip(seed, n, h, w):
    """Random frames on the 16-bit grid, so a 16-bit PNG holds exactly these values."""
    return torch.round(torch.rand(n, 3, h, w, generator=gen(seed), dtype=torch.float64) * 65535) / 65535


def video_outputs(model, frames, windows, forward):
    model = model.double().eval()
    outs = []
    with torch.no_grad():
        for idx in windows:
            outs.append(forward(model, frames[idx].unsqueeze(0))[0])
    return torch.stack(outs).float().numpy()


def edvr_cases():
    cases = []
    n, h, w = 5, 4, 8
    frames = clip(11, n, h, w)
    variants = [
        ("edvr_tsa", dict(with_tsa=True), ["reflection_circle", "replicate", "reflection"]),
        ("edvr_notsa", dict(with_tsa=False), ["reflection_circle"]),
        ("edvr_predeblur", dict(with_tsa=True, with_predeblur=True), ["reflection_circle"]),
    ]
    hr_frames = clip(12, 5, 16, 16)  # the HR-input (deblurring) variant needs sides divisible by 16
    variants.append(("edvr_hrin", dict(with_tsa=False, with_predeblur=True, hr_in=True), ["reflection_circle"]))
    for i, (name, kw, policies) in enumerate(variants):
        frames_v = hr_frames if kw.get("hr_in") else frames
        nv = frames_v.shape[0]
        model = EDVR(num_feat=8, num_frame=5, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1, **kw)
        randomize(model, 100 + i, half=True)
        sd = OrderedDict((k, v.detach().half()) for k, v in model.state_dict().items())
        torch.save({"params": sd}, os.path.join(OUT, f"{name}.pth"))
        tensors = {"frames": frames_v.float().numpy()}
        for p in policies:
            windows = [basicsr_indices(c, nv, 5, p) for c in range(nv)]
            tensors[f"out_{p}"] = video_outputs(model, frames_v, windows, lambda m, x: m(x))
        write_safetensors(os.path.join(OUT, f"{name}.safetensors"), tensors, metadata={"generator": "tools/make_video_fixtures.py"})
        cases.append(dict(case=name, arch="edvr", checkpoint=f"{name}.pth", reference=f"{name}.safetensors",
                          policies=policies, scale=1 if kw.get("hr_in") else 4, hparams=dict(num_feat=8, num_frame=5, deformable_groups=2,
                          num_extract_block=1, num_reconstruct_block=1, **kw),
                          notes="weights stored as float16 (the reference uses the same widened values); "
                                "out_<policy>[t] is the output for centre frame t with BasicSR's "
                                "generate_frame_indices(padding=<policy>)"))
    return cases


def tdan_cases():
    cases = []
    n, h, w = 6, 6, 7
    frames = clip(21, n, h, w)
    model = TDAN_VSR(f=8, groups=2, n_extract=1, n_recon=1)
    randomize(model, 200, half=False)
    torch.save(model.state_dict(), os.path.join(OUT, "tdan_state.pth"))
    # The official model.pt is a whole pickled module: the reader must walk it without code.
    torch.save(model, os.path.join(OUT, "tdan_module.pt"))
    windows = [tdan_indices(c, n) for c in range(n)]
    out = video_outputs(model, frames, windows, lambda m, x: m(x - 0.5)[0] + 0.5)
    write_safetensors(os.path.join(OUT, "tdan.safetensors"), {"frames": frames.float().numpy(), "out_tdan": out},
                      metadata={"generator": "tools/make_video_fixtures.py"})
    for ck in ["tdan_state.pth", "tdan_module.pt"]:
        cases.append(dict(case=ck.split(".")[0], arch="tdan", checkpoint=ck, reference="tdan.safetensors",
                          policies=["tdan"], scale=4,
                          hparams=dict(num_feat=8, num_frame=5, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1),
                          notes="input frames/255 - 0.5 (here frames - 0.5), output + 0.5; windows by TDAN's "
                                "eval rule (k < 0 -> -k, k >= n -> n - 3); DCNv1 border rule"))
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    manifest = {"dcn": dcn_cases(), "models": edvr_cases() + tdan_cases()}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    total = 0
    for name in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, name))
        total += size
        print(f"{size:9d}  {name}")
    print(f"{total:9d}  total in {OUT}")


if __name__ == "__main__":
    main()
