"""Reading Keras weights the way idealo's image-super-resolution ships them (developer tool).

* Keras HDF5 (``model.save`` / ``save_weights``): ``model_weights/<layer>/<layer>/kernel:0`` and
  ``bias:0`` (or the same without the ``model_weights`` group), kernels HWIO.
* TensorFlow.js layers models: ``model.json`` (topology + ``weightsManifest``) and binary shards;
  weights in manifest order, each ``float32`` or quantised (``uint8`` / ``uint16``: ``q*scale + min``
  per tensor; ``float16``: IEEE halves).

``read_keras(path)`` returns ``{layer: {"kernel": HWIO float32, "bias": float32}}`` and the layer
class names from the stored topology. Errors name the file and the tensor.
"""

import json
import os

import numpy as np


class KerasError(Exception):
    pass


def _layer_classes(config):
    cfg = config.get("config", config) if isinstance(config, dict) else {}
    layers = cfg.get("layers", []) if isinstance(cfg, dict) else []
    return {l.get("config", {}).get("name", l.get("name")): l.get("class_name") for l in layers}


def read_h5(path):
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        classes = {}
        if "model_config" in f.attrs:
            raw = f.attrs["model_config"]
            classes = _layer_classes(json.loads(raw.decode() if isinstance(raw, bytes) else raw))
        root = f["model_weights"] if "model_weights" in f else f

        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            parts = name.split("/")
            leaf = parts[-1].split(":")[0]
            if leaf not in ("kernel", "bias"):
                raise KerasError(f"{path}: unexpected weight '{name}' (only conv kernels and biases are expected)")
            layer = parts[-2] if len(parts) >= 2 else parts[0]
            out.setdefault(layer, {})[leaf] = np.asarray(obj, dtype=np.float32)

        root.visititems(visit)
    return out, classes


_QBYTES = {"uint8": (np.uint8, 1), "uint16": (np.uint16, 2), "float16": (np.float16, 2)}


def read_tfjs(path):
    with open(path) as f:
        m = json.load(f)
    topo = m.get("modelTopology", {})
    classes = _layer_classes(topo.get("model_config", topo))
    out = {}
    base = os.path.dirname(path)
    for group in m.get("weightsManifest", []):
        data = b"".join(open(os.path.join(base, p), "rb").read() for p in group["paths"])
        pos = 0
        for w in group["weights"]:
            name, shape = w["name"], w["shape"]
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                dt = q.get("dtype")
                if dt not in _QBYTES:
                    raise KerasError(f"{path}: weight '{name}': unknown quantisation dtype {dt!r}")
                np_t, size = _QBYTES[dt]
                raw = data[pos:pos + n * size]
                if len(raw) != n * size:
                    raise KerasError(f"{path}: weight '{name}': the shards end {n * size - len(raw)} bytes early")
                vals = np.frombuffer(raw, dtype=np.dtype(np_t).newbyteorder("<"))
                if dt == "float16":
                    arr = vals.astype(np.float32)
                else:
                    if "scale" not in q or "min" not in q:
                        raise KerasError(f"{path}: weight '{name}': {dt} quantisation without scale and min")
                    arr = (vals.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32)
                pos += n * size
            else:
                if w.get("dtype", "float32") != "float32":
                    raise KerasError(f"{path}: weight '{name}': dtype {w.get('dtype')} is not a weight")
                raw = data[pos:pos + n * 4]
                if len(raw) != n * 4:
                    raise KerasError(f"{path}: weight '{name}': the shards end {n * 4 - len(raw)} bytes early")
                arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
                pos += n * 4
            layer, leaf = name.rsplit("/", 1)
            leaf = leaf.split(":")[0]
            if leaf not in ("kernel", "bias"):
                raise KerasError(f"{path}: unexpected weight '{name}'")
            out.setdefault(layer.split("/")[-1], {})[leaf] = arr.reshape(shape)
        if pos != len(data):
            raise KerasError(f"{path}: {len(data) - pos} bytes of the shards are not described by the manifest")
    return out, classes


def read_keras(path):
    if path.endswith(".json"):
        w, classes = read_tfjs(path)
    else:
        w, classes = read_h5(path)
    for layer, t in w.items():
        if "kernel" not in t or "bias" not in t:
            raise KerasError(f"{path}: layer '{layer}' lacks its {'bias' if 'kernel' in t else 'kernel'}")
        k = t["kernel"]
        if k.ndim != 4 or t["bias"].shape != (k.shape[3],):
            raise KerasError(f"{path}: layer '{layer}': kernel {k.shape} and bias {t['bias'].shape} "
                             "are not a 2-D convolution (HWIO)")
    return w, classes


def tf_to_torch_shuffle_perm(channels, r):
    """Index array p -> q: PyTorch pixel_shuffle channel p = c*r*r + i*r + j holds what TensorFlow's
    depth_to_space reads from channel q = (i*r + j)*C + c."""
    c_out = channels // (r * r)
    perm = np.empty(channels, dtype=np.int64)
    for c in range(c_out):
        for i in range(r):
            for j in range(r):
                perm[c * r * r + i * r + j] = (i * r + j) * c_out + c
    return perm


def shuffled_layer(weights):
    """The conv that feeds a pixel shuffle (RRDN's PreShuffle; a 'shuffle' RDN's UPN3), or None."""
    if "PreShuffle" in weights:
        return "PreShuffle"
    if "UPN3" in weights and "SR" in weights and weights["SR"]["kernel"].shape[2] == 3:
        return "UPN3"
    return None


def scale_of(weights, layer):
    c = weights[layer]["kernel"].shape[3]
    for s in range(1, 9):
        if 3 * s * s == c:
            return s
    raise KerasError(f"layer '{layer}' has {c} outputs, not 3*s*s")
