"""Write PyTorch models (tools/srref.py) as ncnn ``.param`` + ``.bin`` files, laid out the way the
released ncnn models of Real-ESRGAN and waifu2x-ncnn-vulkan are (layer types, parameters, Split
fan-outs, Concat for dense blocks, Eltwise with coefficients, Crop + Eltwise skips, SE blocks as
Pooling / InnerProduct / Scale). Developer tool for the importer fixtures; never used by the product.

ncnn stores weights of Convolution / Deconvolution / InnerProduct with a 4-byte tag (fp16:
0x01306B47, fp32: 0), biases and PReLU slopes as raw fp32. Transposed-convolution weights are
output-major in ncnn ([out][in][k][k]) and input-major in PyTorch.
"""

import struct

import numpy as np

TAG_FP16 = 0x01306B47


class Net:
    def __init__(self):
        self.layers = []  # [type, name, inputs, outputs, params(str), blobs(list of (kind, array))]
        self.n = 0

    def add(self, typ, inputs, params="", blobs=(), nout=1):
        self.n += 1
        name = f"{typ}_{self.n}"
        outs = [f"b{self.n}_{i}" for i in range(nout)]
        self.layers.append([typ, name, list(inputs), outs, params, list(blobs)])
        return outs[0] if nout == 1 else outs

    def finish(self, out_blob=None):
        """Insert Split layers for blobs read more than once (ncnn reads every blob once)."""
        readers = {}
        for li, L in enumerate(self.layers):
            for k, b in enumerate(L[2]):
                readers.setdefault(b, []).append((li, k))
        inserts = []
        for b, rs in readers.items():
            if len(rs) > 1:
                outs = [f"{b}_splitncnn_{i}" for i in range(len(rs))]
                for (li, k), o in zip(rs, outs):
                    self.layers[li][2][k] = o
                prod = next(i for i, L in enumerate(self.layers) if b in L[3])
                inserts.append((prod, ["Split", f"splitncnn_{b}", [b], outs, "", []]))
        for prod, L in sorted(inserts, key=lambda t: -t[0]):
            self.layers.insert(prod + 1, L)

    def write(self, param_path, bin_path):
        blobs = set()
        for L in self.layers:
            blobs.update(L[2])
            blobs.update(L[3])
        lines = ["7767517", f"{len(self.layers)} {len(blobs)}"]
        for typ, name, ins, outs, params, _ in self.layers:
            lines.append(" ".join([f"{typ:<16}", f"{name:<24}", str(len(ins)), str(len(outs))] + ins + outs
                                  + ([params] if params else [])))
        with open(param_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(bin_path, "wb") as f:
            for L in self.layers:
                for kind, arr in L[5]:
                    a = np.ascontiguousarray(arr, dtype=np.float32).ravel()
                    if kind == "fp16":
                        data = a.astype("<f2").tobytes()
                        data += b"\0" * ((-len(data)) % 4)
                        f.write(struct.pack("<I", TAG_FP16) + data)
                    elif kind == "fp32":
                        f.write(struct.pack("<I", 0) + a.astype("<f4").tobytes())
                    else:  # raw
                        f.write(a.astype("<f4").tobytes())


def _act(act):
    if act is None:
        return ""
    if act == "relu":
        return " 9=1"
    if act == "sigmoid":
        return " 9=4"
    return f" 9=2 -23310=1,{act}"


def conv(net, x, w, b, stride=1, pad=0, act=None, half=True):
    w = np.asarray(w)
    o, _, k, _ = w.shape
    p = f"0={o} 1={k} 3={stride} 4={pad} 5=1 6={w.size}" + _act(act)
    return net.add("Convolution", [x], p, [("fp16" if half else "fp32", w), ("raw", b)])


def deconv(net, x, w, b, stride, pad, act=None, half=True):
    w = np.asarray(w).transpose(1, 0, 2, 3)  # PyTorch [in][out] -> ncnn [out][in]
    o, _, k, _ = w.shape
    p = f"0={o} 1={k} 3={stride} 4={pad} 5=1 6={w.size}" + _act(act)
    return net.add("Deconvolution", [x], p, [("fp16" if half else "fp32", w), ("raw", b)])


def sd_np(sd):
    return {k: v.detach().double().numpy() for k, v in sd.items()}


def upconv7(sd, half=True):
    s = sd_np(sd)
    net = Net()
    x = net.add("Input", [], "0=156 1=156 2=3")
    for i in range(6):
        x = conv(net, x, s[f"net.{2 * i}.weight"], s[f"net.{2 * i}.bias"], act=0.1, half=half)
    deconv(net, x, s["net.12.weight"], s["net.12.bias"], 2, 3, half=half)
    net.finish()
    return net


def srvgg(sd, scale, half=True):
    s = sd_np(sd)
    net = Net()
    inp = net.add("Input", [], "")
    x = inp
    i = 0
    while f"body.{2 * i + 2}.weight" in s:
        x = conv(net, x, s[f"body.{2 * i}.weight"], s[f"body.{2 * i}.bias"], pad=1, half=half)
        x = net.add("PReLU", [x], f"0={s[f'body.{2 * i + 1}.weight'].size}", [("raw", s[f"body.{2 * i + 1}.weight"])])
        i += 1
    x = conv(net, x, s[f"body.{2 * i}.weight"], s[f"body.{2 * i}.bias"], pad=1, half=half)
    x = net.add("PixelShuffle", [x], f"0={scale}")
    up = net.add("Interp", [inp], f"0=1 1={float(scale)} 2={float(scale)}")
    net.add("BinaryOp", [x, up], "0=0")
    net.finish()
    return net


def rrdb(sd, blocks, half=True):
    s = sd_np(sd)
    net = Net()
    x = net.add("Input", [], "")

    def c(x, name, act=None):
        return conv(net, x, s[f"{name}.weight"], s[f"{name}.bias"], pad=1, act=act, half=half)

    feat = c(x, "conv_first")
    x = feat
    for i in range(blocks):
        x0 = x
        for r in (1, 2, 3):
            p = f"body.{i}.rdb{r}"
            parts = [x]
            for m in range(1, 5):
                inp = parts[0] if len(parts) == 1 else net.add("Concat", parts)
                parts = parts + [c(inp, f"{p}.conv{m}", 0.2)]
            y = c(net.add("Concat", parts), f"{p}.conv5")
            x = net.add("Eltwise", [y, x], "0=1 -23301=2,0.2,1.0")
        x = net.add("Eltwise", [x, x0], "0=1 -23301=2,0.2,1.0")
    x = net.add("BinaryOp", [feat, c(x, "conv_body")], "0=0")
    for up in ("conv_up1", "conv_up2"):
        x = c(net.add("Interp", [x], "0=1 1=2.0 2=2.0"), up, 0.2)
    c(c(x, "conv_hr", 0.2), "conv_last")
    net.finish()
    return net


def cunet(sd, scale, half=True):
    s = sd_np(sd)
    net = Net()
    lr = 0.1

    def cv(x, n, stride=1, act=lr):
        return conv(net, x, s[f"{n}.weight"], s[f"{n}.bias"], stride=stride, act=act, half=half)

    def dc(x, n, stride=2, pad=0, act=lr):
        return deconv(net, x, s[f"{n}.weight"], s[f"{n}.bias"], stride, pad, act=act, half=half)

    def unet_conv(x, p, se):
        x = cv(cv(x, f"{p}.conv.0"), f"{p}.conv.2")
        if not se:
            return x
        g = net.add("Pooling", [x], "0=1 4=1")
        w1, b1 = s[f"{p}.seblock.conv1.weight"], s[f"{p}.seblock.conv1.bias"]
        w2, b2 = s[f"{p}.seblock.conv2.weight"], s[f"{p}.seblock.conv2.bias"]
        # InnerProduct weights stay fp32 in waifu2x's files.
        g = net.add("InnerProduct", [g], f"0={w1.shape[0]} 1=1 2={w1.size} 9=1", [("fp32", w1), ("raw", b1)])
        g = net.add("InnerProduct", [g], f"0={w2.shape[0]} 1=1 2={w2.size} 9=4", [("fp32", w2), ("raw", b2)])
        return net.add("Scale", [x, g], "0=-233")

    def skip(a, b, o):
        return net.add("Eltwise", [net.add("Crop", [a, b], f"0={o} 1={o}"), b], "0=1")

    x = net.add("Input", [], "0=200 1=200 2=3")
    x1 = unet_conv(x, "unet1.conv1", False)
    x2 = unet_conv(cv(x1, "unet1.conv1_down", 2), "unet1.conv2", True)
    x3 = cv(skip(x1, dc(x2, "unet1.conv2_up"), 4), "unet1.conv3")
    z1 = dc(x3, "unet1.conv_bottom", 2, 3, act=None) if scale == 2 else cv(x3, "unet1.conv_bottom", act=None)
    y1 = unet_conv(z1, "unet2.conv1", False)
    y2 = unet_conv(cv(y1, "unet2.conv1_down", 2), "unet2.conv2", True)
    y3 = unet_conv(cv(y2, "unet2.conv2_down", 2), "unet2.conv3", True)
    y4 = unet_conv(skip(y2, dc(y3, "unet2.conv3_up"), 4), "unet2.conv4", True)
    y5 = cv(skip(y1, dc(y4, "unet2.conv4_up"), 16), "unet2.conv5")
    skip(z1, cv(y5, "unet2.conv_bottom", act=None), 20)
    net.finish()
    return net


def half_rounded(sd, keep_fp32=lambda name: False):
    """The state dict with conv / transposed-conv weights rounded through fp16, as the writer
    stores them (biases, PReLU slopes and ``keep_fp32`` tensors stay fp32)."""
    import torch

    out = type(sd)()
    for k, v in sd.items():
        if k.endswith(".weight") and v.dim() == 4 and not keep_fp32(k):
            out[k] = v.half().float()
        else:
            out[k] = v.clone()
    return out
