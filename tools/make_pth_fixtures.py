#!/usr/bin/env python3
"""Write the small PyTorch checkpoint fixtures for the pure-Rust .pth reader.

Developer-only (needs torch; CI never runs it): `/work/venv/bin/python tools/make_pth_fixtures.py`.
Writes `tests/fixtures/pth/*.pth` plus `expected.json`, which lists for every readable fixture the
state-dict key the reader must choose, every tensor (name, dtype, shape, flattened values) in
state_dict() order, and the scalar extras. Fixtures the reader must reject are listed under
"errors" with a substring of the expected message.
"""
import collections
import io
import json
import os
import zipfile

import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "pth")
DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
         torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
         torch.uint8: "U8", torch.bool: "BOOL"}

expected = {"files": {}, "errors": {}}


def describe(t):
    vals = t.detach().flatten()
    if t.dtype in (torch.float16, torch.bfloat16):
        vals = vals.float()
    if t.dtype == torch.bool:
        vals = vals.to(torch.int64)
    return {"dtype": DTYPE[t.dtype], "shape": list(t.shape), "values": vals.tolist()}


def save(name, obj, tensors, source_key=None, extras=None, legacy=False):
    path = os.path.join(OUT, name)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    expected["files"][name] = {
        "source_key": source_key,
        "tensors": [dict(name=k, **describe(v)) for k, v in tensors.items()],
        "extras": extras or {},
    }
    # The oracle: torch itself must load what we claim.
    torch.load(path, weights_only=False)


def rezip(src, dst, compression, byteorder=None):
    """Copy a torch zip archive entry by entry with another compression (or byte order)."""
    with zipfile.ZipFile(os.path.join(OUT, src)) as zin, \
            zipfile.ZipFile(os.path.join(OUT, dst), "w", compression) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if byteorder is not None and info.filename.endswith("/byteorder"):
                data = byteorder
            zout.writestr(info.filename, data)


def tiny_state(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4), nn.Conv2d(4, 2, 1))
    return net.state_dict()


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.PReLU()
        self.skip = nn.Identity()


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 4, 3, bias=False)
        self.body = nn.Sequential(Block(), nn.PReLU(4), Block())
        self.register_module("missing", None)
        self.register_buffer("scale", torch.tensor([4.0]))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.register_parameter("unused", None)


def dump_json(v, indent=0):
    """Indented JSON with each tensor on one line, so diffs stay readable."""
    pad = " " * indent
    if isinstance(v, dict) and "values" not in v:
        if not v:
            return "{}"
        items = [f'{pad} {json.dumps(k)}: {dump_json(x, indent + 1)}' for k, x in sorted(v.items())]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}" + ("\n" if indent == 0 else "")
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return "[\n" + ",\n".join(pad + " " + dump_json(x, indent + 1) for x in v) + "\n" + pad + "]"
    return json.dumps(v)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))

    sd = tiny_state(1)
    save("zip_plain.pth", sd, sd)
    save("legacy_plain.pth", sd, sd, legacy=True)

    ema = tiny_state(2)
    save("params_ema.pth", {"params": sd, "params_ema": ema}, ema, source_key="params_ema")
    save("params.pth", {"params": sd}, sd, source_key="params")
    save("state_dict_extras.pth",
         {"epoch": 7, "state_dict": sd, "arch": "edsr", "pro": True, "lr": 0.5,
          "optimizer": {"state": {}, "param_groups": [{"lr": 0.5}]}},
         sd, source_key="state_dict",
         extras={"epoch": "7", "arch": "edsr", "pro": "true", "lr": "0.5"})

    dp = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
    save("dataparallel.pth", dp, sd)

    torch.manual_seed(3)
    base = torch.randn(6)
    dtypes = collections.OrderedDict([
        ("f32", base.clone()),
        ("f16", (base * 100).half()),
        ("bf16", (base * 100).bfloat16()),
        ("f64", base.double() / 3),
        ("i64", torch.tensor([-(2 ** 40), -1, 0, 1, 2 ** 40], dtype=torch.int64)),
        ("i32", torch.tensor([-7, 0, 2 ** 30], dtype=torch.int32)),
        ("i16", torch.tensor([-300, 300], dtype=torch.int16)),
        ("i8", torch.tensor([-128, 127], dtype=torch.int8)),
        ("u8", torch.tensor([0, 200, 255], dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
    ])
    save("dtypes.pth", dtypes, dtypes)
    save("dtypes_legacy.pth", dtypes, dtypes, legacy=True)

    grid = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    small = torch.tensor([1.0, 2.0, 3.0])
    views = collections.OrderedDict([
        ("grid", grid),
        ("transposed", grid.t()),            # stride (1, 6)
        ("rows", grid[1:3]),                 # offset 6
        ("cols", grid[:, 2:5]),              # offset 2, stride (6, 1)
        ("stepped", grid.flatten()[3::5]),   # offset 3, stride 5
        ("expanded", small.expand(2, 3)),    # stride (0, 1)
        ("scalar", torch.tensor(3.5)),       # zero-dim
        ("empty", torch.zeros(0, 3)),        # zero-size
    ])
    for k, v in views.items():
        if k in ("rows", "cols", "stepped", "transposed"):
            assert v.untyped_storage().data_ptr() == grid.untyped_storage().data_ptr()
    save("views.pth", views, views)
    save("views_legacy.pth", views, views, legacy=True)

    torch.manual_seed(4)
    net = TinyNet()
    with torch.no_grad():  # make buffers non-trivial
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.num_batches_tracked.fill_(3)
    msd = net.state_dict()
    assert "scratch" not in msd and "missing" not in str(list(msd))
    save("module.pth", net, msd)
    save("module_legacy.pth", net, msd, legacy=True)
    save("module_under_model.pth", {"iter": 100, "model": net}, msd, source_key="model",
         extras={"iter": "100"})

    # Re-zipped copies: deflate must read (some published checkpoints are re-zipped that way),
    # other compression methods and a big-endian byte order are clear errors.
    rezip("zip_plain.pth", "deflate.pth", zipfile.ZIP_DEFLATED)
    expected["files"]["deflate.pth"] = expected["files"]["zip_plain.pth"]
    rezip("zip_plain.pth", "bzip2.pth", zipfile.ZIP_BZIP2)
    expected["errors"]["bzip2.pth"] = "compression method 12"
    rezip("zip_plain.pth", "big_endian.pth", zipfile.ZIP_STORED, byteorder=b"big")
    expected["errors"]["big_endian.pth"] = "byte order"

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        f.write(dump_json(expected))
    for name in sorted(os.listdir(OUT)):
        print(f"{name:28s} {os.path.getsize(os.path.join(OUT, name)):7d} bytes")


if __name__ == "__main__":
    main()
