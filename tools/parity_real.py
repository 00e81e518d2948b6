#!/usr/bin/env python3
"""Reference output of the real realesr-animevideov3 checkpoint on a real photo crop.

Developer tool, run by hand (never by CI; its output is not committed):

    /work/venv/bin/python tools/parity_real.py
    /work/venv/bin/python tools/parity_real.py --image ../shared/data/sisr/Set14/HR/lenna.png --out /tmp/x.safetensors

Loads ``../shared/weights/realesrgan/realesr-animevideov3.pth`` (relative to the repo
root) into SRVGGNetCompact(num_feat=64, num_conv=16, upscale=4, act_type='prelu') with
``strict=True`` -- which proves the key layout of tools/srref.py -- crops a fixed
window of a Set14 image, runs it, and writes a safetensors file with float32
``input`` (NCHW [1,3,H,W], [0,1]) and ``output`` (NCHW [1,3,4H,4W], unclamped) to
``target/parity/realesr-animevideov3_set14_crop.safetensors`` by default.
"""

import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srref import SRVGGNetCompact, write_safetensors  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
DEFAULT_WEIGHTS = os.path.join(SHARED, "weights", "realesrgan", "realesr-animevideov3.pth")
DEFAULT_IMAGE = os.path.join(SHARED, "data", "sisr", "Set14", "HR", "baboon.png")
DEFAULT_OUT = os.path.join(REPO, "target", "parity", "realesr-animevideov3_set14_crop.safetensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=DEFAULT_WEIGHTS)
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--top", type=int, default=100, help="crop offset (rows)")
    ap.add_argument("--left", type=int, default=120, help="crop offset (columns)")
    ap.add_argument("--size", type=int, default=64, help="crop height and width")
    ap.add_argument("--f32", action="store_true",
                    help="store PyTorch's float32 forward instead of the float64 one rounded to float32")
    args = ap.parse_args()

    ckpt = torch.load(args.weights, map_location="cpu", weights_only=True)
    key = "params_ema" if "params_ema" in ckpt else "params" if "params" in ckpt else None
    sd = ckpt[key] if key else ckpt
    model = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type="prelu")
    model.load_state_dict(sd, strict=True)
    model.eval()

    img = Image.open(args.image).convert("RGB")
    t, l, s = args.top, args.left, args.size
    if t + s > img.height or l + s > img.width:
        sys.exit(f"crop {s}x{s} at ({t},{l}) does not fit in {img.width}x{img.height} image")
    crop = np.asarray(img, dtype=np.uint8)[t:t + s, l:l + s, :]
    x = torch.from_numpy(crop.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0).contiguous()

    torch.set_num_threads(1)
    with torch.no_grad():
        y32 = model(x)
        y64 = model.double()(x.double()).float()
    y = y32 if args.f32 else y64

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_safetensors(
        args.out,
        {"input": x.numpy(), "output": y.numpy()},
        metadata={
            "weights": os.path.basename(args.weights),
            "state_dict_key": key,
            "image": os.path.basename(args.image),
            "crop_top_left_size": f"{t},{l},{s}",
            "model": "SRVGGNetCompact(num_feat=64,num_conv=16,upscale=4,act_type=prelu)",
            "precision": "float32 forward" if args.f32 else "float64 forward rounded to float32",
            "input": "uint8 RGB / 255 (float32), NCHW",
            "output": "NCHW, unclamped",
        },
    )
    print(f"weights : {args.weights} (key {key!r}, {len(sd)} tensors, strict=True load ok)")
    print(f"image   : {args.image} {img.width}x{img.height}, crop {s}x{s} at top={t} left={l}")
    print(f"wrote   : {args.out} ({os.path.getsize(args.out)} bytes)")
    print(f"  input  {list(x.shape)} f32 range [{float(x.min()):.4f}, {float(x.max()):.4f}]")
    print(f"  output {list(y.shape)} f32 range [{float(y.min()):.4f}, {float(y.max()):.4f}] "
          f"({'f32' if args.f32 else 'f64->f32'}); |f32 - f64| max = {float((y32 - y64).abs().max()):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
