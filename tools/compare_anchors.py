#!/usr/bin/env python3
"""Side-by-side speed of superres and the tools a user would otherwise run (PyTorch eager,
channels_last, bf16 autocast where the CPU has AVX512-BF16, ONNX Runtime, OpenVINO) on the same
random weights and the same 320x180 input, in one run on this machine; prints the ratios.

Developer tool (never CI). Needs a venv with torch, torchvision, onnx, onnxscript, onnxruntime and
openvino (the packages of ../shared/anchors/bench/requirements.txt) and a release build:

    cargo build --release
    /work/venv/bin/python tools/compare_anchors.py --threads 2 --reps 3 --models edsr_baseline tdan
    # superres fp32 and bf16 (AMX) against PyTorch's bf16 autocast only:
    python3 tools/compare_anchors.py --models edsr_baseline rrdbnet --precisions fp32 bf16 --anchors torch_bf16

Weights use the official layouts (tools/srref.py, tools/vsrref.py); the same checkpoint file is
timed by `superres bench`. Video models: PyTorch and the runtimes run one 5-frame window; superres
reports the single window and the steady-state cost per frame of a stream. For TDAN timing, the
DCNv1 layers run through torchvision's deform_conv2d (same cost as the original kernel).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import srref  # noqa: E402
import vsrref  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SUPERRES_BIN", os.path.join(REPO, "target", "release", "superres"))


def deform_fp32(x, offset, weight, bias, stride, padding, mask=None):
    """torchvision's deform_conv2d in fp32 even under bf16 autocast (it has no bf16 CPU kernel;
    PERF.md's bf16 anchors keep the deformable layers in fp32 the same way)."""
    with torch.autocast("cpu", enabled=False):
        f = (lambda t: None if t is None else t.float())
        return torchvision.ops.deform_conv2d(f(x), f(offset), f(weight), f(bias), stride, padding, 1, f(mask))


class FastOffset2d(vsrref.ConvOffset2d):
    """TDAN's DCNv1 layer through torchvision, for timing only."""

    def forward(self, x, offset):
        return deform_fp32(x, offset, self.weight, None, self.stride, self.padding)


def dcnv2_forward(self, x, feat):
    """vsrref.DCNv2Pack.forward with the deformable sum in fp32 under autocast."""
    out = self.conv_offset(feat)
    o1, o2, mask = torch.chunk(out, 3, dim=1)
    return deform_fp32(x, torch.cat((o1, o2), dim=1), self.weight, self.bias, 1, self.padding, torch.sigmoid(mask))


def build(name):
    torch.manual_seed(0)
    if name == "edsr_baseline":
        m = srref.EDSRBasicSR(num_feat=64, num_block=16, upscale=4)
        return m, {"params": m.state_dict()}, (1, 3, 180, 320)
    if name == "rrdbnet":
        m = srref.RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)
        return m, {"params_ema": m.state_dict()}, (1, 3, 180, 320)
    if name == "edvr_m":
        vsrref.DCNv2Pack.forward = dcnv2_forward
        m = vsrref.EDVR(num_feat=64, num_frame=5, deformable_groups=8, num_extract_block=5, num_reconstruct_block=10)
        return m, {"params": m.state_dict()}, (1, 5, 3, 180, 320)
    if name == "tdan":
        vsrref.ConvOffset2d = FastOffset2d
        m = vsrref.TDAN_VSR(f=64, groups=8, n_extract=5, n_recon=10)
        for mod in m.modules():
            if isinstance(mod, vsrref.ConvOffset2d):
                torch.nn.init.normal_(mod.weight, std=0.01)
        return m, m.state_dict(), (1, 5, 3, 180, 320)
    raise ValueError(name)


class FirstOutput(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        y = self.m(x)
        return y[0] if isinstance(y, tuple) else y


def timeit(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def has_bf16():
    try:
        return "avx512_bf16" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def anchors(model, shape, threads, reps, warmup, tmp, name, only):
    torch.set_num_threads(threads)
    model = FirstOutput(model).eval()
    x = torch.rand(*shape)
    res = {}

    def torch_run(m, xx, bf16=False):
        def f():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return m(xx)
        return f

    if "torch_eager" in only:
        res["torch_eager"] = timeit(torch_run(model, x), reps, warmup)
    if x.dim() == 4 and "torch_channels_last" in only:
        mcl = model.to(memory_format=torch.channels_last)
        res["torch_channels_last"] = timeit(torch_run(mcl, x.contiguous(memory_format=torch.channels_last)), reps, warmup)
        model = model.to(memory_format=torch.contiguous_format)
    if has_bf16() and "torch_bf16" in only:
        try:
            res["torch_bf16"] = timeit(torch_run(model, x, bf16=True), reps, warmup)
        except Exception as e:  # noqa: BLE001
            print(f"  torch bf16 failed: {repr(e)[:200]}", file=sys.stderr)
    if not {"onnxruntime", "openvino"} & set(only):
        return res
    onnx_path = os.path.join(tmp, f"{name}.onnx")
    try:
        torch.onnx.export(model, (x,), onnx_path, opset_version=19, input_names=["x"], output_names=["y"], dynamo=False)
    except Exception as e:  # noqa: BLE001
        print(f"  onnx export (legacy) failed: {repr(e)[:200]}", file=sys.stderr)
        try:
            torch.onnx.export(model, (x,), onnx_path, opset_version=19, input_names=["x"], output_names=["y"], dynamo=True)
        except Exception as e2:  # noqa: BLE001
            print(f"  onnx export failed: {repr(e2)[:200]}", file=sys.stderr)
            onnx_path = None
    xi = x.numpy()
    if onnx_path and "onnxruntime" in only:
        try:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
            res["onnxruntime"] = timeit(lambda: sess.run(None, {"x": xi}), reps, warmup)
        except Exception as e:  # noqa: BLE001
            print(f"  onnxruntime failed: {repr(e)[:200]}", file=sys.stderr)
    if "openvino" not in only:
        return res
    try:
        import openvino as ov

        core = ov.Core()
        try:
            ovm = ov.convert_model(model, example_input=x)
        except Exception:  # noqa: BLE001
            ovm = core.read_model(onnx_path)
        for prec in ["f32"] + (["bf16"] if has_bf16() else []):
            cm = core.compile_model(ovm, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                 "INFERENCE_PRECISION_HINT": prec})
            req = cm.create_infer_request()
            res[f"openvino_{prec}"] = timeit(lambda: req.infer({0: xi}), reps, warmup)
    except Exception as e:  # noqa: BLE001
        print(f"  openvino failed: {repr(e)[:200]}", file=sys.stderr)
    return res


ANCHORS = ["torch_eager", "torch_channels_last", "torch_bf16", "onnxruntime", "openvino"]


def ours(ckpt, threads, reps, warmup, precision):
    out = subprocess.run([BIN, "bench", "-m", ckpt, "--size", "320x180", "--threads", str(threads), "--reps", str(reps),
                          "--warmup", str(warmup), "--precision", precision, "--json"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["edsr_baseline", "rrdbnet", "edvr_m", "tdan"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                    help="superres --precision values to time (bf16 runs fp32 where the CPU has no AMX)")
    ap.add_argument("--anchors", nargs="+", default=ANCHORS, choices=ANCHORS, help="which other tools to time")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: run cargo build --release first")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models:
            model, ckpt_obj, shape = build(name)
            ckpt = os.path.join(tmp, f"{name}.pth")
            torch.save(ckpt_obj, ckpt)
            ums = {}
            for p in a.precisions:
                print(f"== {name}: superres {p}", file=sys.stderr)
                ums[p] = ours(ckpt, a.threads, a.reps, a.warmup, p)
            print(f"== {name}: anchors", file=sys.stderr)
            an = anchors(model, shape, a.threads, a.reps, a.warmup, tmp, name, a.anchors)
            rows.append({"model": name, "superres": ums[a.precisions[0]], "superres_by_precision": ums, "anchors": an})
            print(f"\n{name} ({a.threads} threads, input 320x180{' x5 frames' if len(shape) == 5 else ''}):")
            for p, us in ums.items():
                mine = us["median_s"]
                who = "superres" if p == "fp32" else f"superres {p}"
                print(f"  {who:<21} {mine:8.3f} s" + (f"   (streamed: {us['stream_per_frame_median_s']:.3f} s per frame)" if "stream_per_frame_median_s" in us else ""))
                for k, v in an.items():
                    line = f"  {k:<21} {v:8.3f} s   {who}/{k} = {mine / v:.2f}"
                    if "stream_per_frame_median_s" in us:
                        line += f", streamed/{k} = {us['stream_per_frame_median_s'] / v:.2f}"
                    print(line)
            sys.stdout.flush()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
