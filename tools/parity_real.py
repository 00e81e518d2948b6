#!/usr/bin/env python3
"""Reference outputs of the shipped real models on crops of real photos.

Developer tool, run by hand (never by CI; its output is not committed):

    /work/venv/bin/python tools/parity_real.py                 # every model below
    /work/venv/bin/python tools/parity_real.py realesrgan-x4plus waifu2x-cunet
    /work/venv/bin/python tools/parity_real.py --f32 ...       # PyTorch float32 instead of float64

For each model it loads the weights *we ship* (``weights/<name>.safetensors``, fp16 tensors widened
to fp32 exactly as our loader does) into the reference model of tools/srref.py with
``strict=True`` -- which also proves our canonical names are the upstream layouts -- or, for the
idealo Keras models, into the numpy Keras-semantics reference of tools/keras_ref.py; crops a fixed
window of a Set14 / Set5 image, pads it the way the model's own runner does (Real-ESRGAN:
reflect to the unshuffle factor; waifu2x-ncnn-vulkan: edge replicate by the pre-padding), runs it,
and writes ``target/parity/<name>_crop.safetensors`` with float32 ``input`` (NCHW [1,3,H,W], [0,1])
and ``output`` (NCHW, unclamped). ``tests/real_models.rs`` compares our output with it on every CPU
level (PSNR >= 60 dB) when the file exists.

The default original checkpoint of realesr-animevideov3 is still checked here too: ``--original``
loads ``../shared/weights/realesrgan/realesr-animevideov3.pth`` instead of our file.
"""

import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srref import (  # noqa: E402
    WAIFU2X_PAD,
    CUNet,
    RRDBNet,
    SRVGGNetCompact,
    UpConv7,
    realesrgan_run,
    waifu2x_run,
    write_safetensors,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
SET14 = os.path.join(SHARED, "data", "sisr", "Set14", "HR")
OUT = os.path.join(REPO, "target", "parity")


def load_ours(name):
    from safetensors.numpy import load_file

    return {k: torch.from_numpy(v.astype(np.float32)) for k, v in load_file(os.path.join(REPO, "weights", f"{name}.safetensors")).items()}


IDEALO = {
    "idealo-rdn-x2": os.path.join(SHARED, "weights", "idealo", "rdn-psnr-small-x2.h5"),
    "idealo-rrdn-x4": os.path.join(SHARED, "weights", "idealo", "rrdn-gans-x4-tfjs-uint8", "model.json"),
}


def load_raw(path):
    from safetensors.numpy import load_file

    return load_file(path)


def torch_model(model, run=None):
    """A callable (x NCHW float tensor, f64 flag) -> output using a torch module."""

    def f(x, f64):
        m = model.double() if f64 else model.float()
        with torch.no_grad():
            xx = x.double() if f64 else x
            y = run(m, xx) if run else m(xx)
        return y.float()

    return f


def make(name, original=False):
    if name == "realesr-animevideov3":
        m = SRVGGNetCompact(num_feat=64, num_conv=16, upscale=4, act_type="prelu")
        if original:
            ck = torch.load(os.path.join(SHARED, "weights", "realesrgan", "realesr-animevideov3.pth"),
                            map_location="cpu", weights_only=True)
            m.load_state_dict(ck["params"], strict=True)
        else:
            m.load_state_dict(load_ours(name), strict=True)
        return torch_model(m.eval()), 4
    if name == "realesrgan-x4plus":
        m = RRDBNet(scale=4, num_feat=64, num_block=23, num_grow_ch=32)
        m.load_state_dict(load_ours(name), strict=True)
        return torch_model(m.eval(), lambda mm, x: realesrgan_run(mm, x, 4)), 4
    if name.startswith("waifu2x-upconv7"):
        m = UpConv7()
        m.load_state_dict(load_ours(name), strict=True)
        pad, align = WAIFU2X_PAD["upconv7"]
        return torch_model(m.eval(), lambda mm, x: waifu2x_run(mm, x, pad, align, 2)), 2
    if name == "waifu2x-cunet":
        m = CUNet(scale=2)
        m.load_state_dict(load_ours(name), strict=True)
        pad, align = WAIFU2X_PAD["cunet2"]
        return torch_model(m.eval(), lambda mm, x: waifu2x_run(mm, x, pad, align, 2)), 2
    if name.startswith("idealo-"):
        # Keras semantics on the original Keras / TF.js weights (HWIO kernels, depth_to_space order),
        # rounded through fp16 where our shipped file stores fp16: an independent check of the
        # converter's transposes and channel permutation as well as of the engine.
        import convert_keras
        import keras_ref

        src = IDEALO[name]
        ours = os.path.join(REPO, "weights", f"{name}.safetensors")
        fp16 = os.path.exists(ours) and any(v.dtype == np.float16 for v in load_raw(ours).values())
        if not os.path.exists(ours):
            # Not shipped: write the converted state dict for tests/real_models.rs to load.
            tensors, _ = convert_keras.convert(src)
            convert_keras.write_state_dict(os.path.join(OUT, f"{name}.raw.safetensors"), tensors,
                                           {"source": os.path.basename(src)})
        return keras_ref.runner(src, fp16=fp16), int(name[-1])
    raise SystemExit(f"unknown model {name}")


# name -> (image, top, left, size): odd sizes and positions on purpose (alignment, padding).
CROPS = {
    "realesr-animevideov3": ("baboon.png", 100, 120, 64),
    "realesrgan-x4plus": ("comic.png", 40, 61, 37),
    "waifu2x-upconv7-anime": ("comic.png", 20, 33, 61),
    "waifu2x-upconv7-anime-noise2": ("comic.png", 20, 33, 61),
    "waifu2x-upconv7-photo": ("lenna.png", 200, 211, 57),
    "waifu2x-cunet": ("monarch.png", 100, 151, 55),
    "idealo-rdn-x2": ("barbara.png", 300, 401, 49),
    "idealo-rrdn-x4": ("pepper.png", 211, 200, 31),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help=f"default: all of {', '.join(CROPS)} whose weights exist")
    ap.add_argument("--f32", action="store_true", help="float32 forward instead of float64 rounded to float32")
    ap.add_argument("--original", action="store_true",
                    help="realesr-animevideov3 only: use the original .pth instead of the shipped file")
    args = ap.parse_args()
    names = args.models or [n for n in CROPS
                            if os.path.exists(os.path.join(REPO, "weights", f"{n}.safetensors")) or n in IDEALO]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(OUT, exist_ok=True)
    for name in names:
        image, t, l, s = CROPS[name]
        run, scale = make(name, args.original)
        img = Image.open(os.path.join(SET14, image)).convert("RGB")
        crop = np.asarray(img, dtype=np.uint8)[t:t + s, l:l + s, :]
        assert crop.shape[:2] == (s, s), f"crop {s}x{s} at ({t},{l}) does not fit {image}"
        x = torch.from_numpy(crop.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0).contiguous()
        y = run(x, not args.f32)
        assert tuple(y.shape) == (1, 3, s * scale, s * scale), (name, tuple(y.shape))
        path = os.path.join(OUT, f"{name}_crop.safetensors")
        write_safetensors(path, {"input": x.numpy(), "output": y.numpy()}, metadata={
            "weights": f"weights/{name}.safetensors" if not args.original else "realesr-animevideov3.pth",
            "image": image, "crop_top_left_size": f"{t},{l},{s}",
            "precision": "float32 forward" if args.f32 else "float64 forward rounded to float32",
        })
        print(f"{name:30s} {image} crop {s}x{s} at ({t},{l}) -> {path} "
              f"output range [{float(y.min()):.3f}, {float(y.max()):.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
