#!/usr/bin/env python3
"""One-time converter: idealo image-super-resolution Keras weights (HDF5, or a TensorFlow.js layers
model with uint8-quantised weights) -> a safetensors state dict in superres's canonical names.

    /work/venv/bin/python tools/convert_keras.py rdn-psnr-small-x2.h5 -o rdn.raw.safetensors [--fp16]
    /work/venv/bin/python tools/convert_keras.py rrdn-gans-x4/model.json -o rrdn.raw.safetensors
    superres convert rdn.raw.safetensors -o weights/idealo-rdn-x2.safetensors   # detects RDN, checks

Developer tool (needs numpy and h5py): these are not formats users feed a CLI every day, so the
product reads only the result. What it does:

* every Conv2D layer ``L`` becomes ``L.weight`` (kernel HWIO -> OIHW, PyTorch order) and
  ``L.bias``, under the Keras layer name (``F_m1``, ``F_1_1``, ``LFF_1``, ``UPN3``, ``SR``, ...);
* TF.js quantised weights are dequantised as ``q*scale + min`` (per tensor); a quantised weight
  without a scale or min is an error naming it;
* the conv feeding a pixel shuffle (RRDN ``PreShuffle``; ``UPN3`` of a "shuffle" RDN) has its
  output channels permuted from TensorFlow's ``depth_to_space`` order to PyTorch's
  ``pixel_shuffle`` order, which is what superres's shuffle implements;
* ``--fp16`` stores the kernels as IEEE halves (biases stay fp32); the loader widens them exactly.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_io import KerasError, read_keras, scale_of, shuffled_layer, tf_to_torch_shuffle_perm  # noqa: E402

_DT = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16"}


def write_state_dict(path, tensors, metadata):
    """safetensors with no holes: widest dtype first, then by name (as superres writes them)."""
    order = sorted(tensors, key=lambda n: (-tensors[n].dtype.itemsize, n))
    header, blobs, off = {}, [], 0
    for n in order:
        a = np.ascontiguousarray(tensors[n])
        data = a.tobytes()
        header[n] = {"dtype": _DT[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * ((-len(h)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def convert(src, fp16=False):
    """Canonical tensors {name: array} from a Keras .h5 or TF.js model.json."""
    weights, _ = read_keras(src)
    shuffled = shuffled_layer(weights)
    out = {}
    for layer, t in weights.items():
        k = t["kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
        b = t["bias"]
        if layer == shuffled:
            r = scale_of(weights, layer)
            perm = tf_to_torch_shuffle_perm(k.shape[0], r)
            k, b = k[perm], b[perm]
        out[f"{layer}.weight"] = np.ascontiguousarray(k, dtype="<f2" if fp16 else "<f4")
        out[f"{layer}.bias"] = np.ascontiguousarray(b, dtype="<f4")
    return out, shuffled


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="Keras .h5 / .hdf5, or a TF.js model.json (shards beside it)")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--fp16", action="store_true", help="store kernels as fp16")
    args = ap.parse_args()
    try:
        tensors, shuffled = convert(args.src, args.fp16)
    except (KerasError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    meta = {"source": os.path.basename(args.src), "converted_by": "tools/convert_keras.py",
            "kernels": "fp16" if args.fp16 else "fp32"}
    if shuffled:
        meta["pixel_shuffle"] = f"{shuffled} output channels permuted from depth_to_space to pixel_shuffle order"
    write_state_dict(args.output, tensors, meta)
    print(f"{args.src}: {len(tensors)} tensors -> {args.output}" + (f" ({shuffled} permuted)" if shuffled else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
