"""numpy reference of idealo's RDN and RRDN with Keras semantics (developer tool).

Works on the weights as Keras holds them (``{layer: {"kernel": HWIO, "bias"}}``, see keras_io.py),
in float64: ``Conv2D(padding='same')`` with stride 1 (odd kernels: (k-1)/2 zeros each side),
cross-correlation with HWIO kernels, ReLU, ``concatenate`` on channels, ``Add``, ``MultiplyBeta``,
nearest ``UpSampling2D`` and ``tf.nn.depth_to_space`` (channel ``(i*r + j)*C + c`` to offset
(i, j) of channel c). Images are NHWC here; ``runner`` adapts to NCHW tensors for parity_real.py.
"""

import numpy as np


def conv(x, layer, w):
    """x: [H, W, Cin] float64; 'same' padding, stride 1."""
    k = w[layer]["kernel"].astype(np.float64)
    b = w[layer]["bias"].astype(np.float64)
    kh, kw, cin, cout = k.shape
    assert x.shape[2] == cin, (layer, x.shape, k.shape)
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, ((ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)))
    h, wd = x.shape[:2]
    cols = np.empty((h, wd, kh, kw, cin))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j, :] = xp[i:i + h, j:j + wd, :]
    return cols.reshape(h * wd, -1) @ k.reshape(-1, cout) + b


def _conv(x, layer, w):
    return conv(x, layer, w).reshape(x.shape[0], x.shape[1], -1)


def relu(x):
    return np.maximum(x, 0.0)


def upsample_nearest(x, s):
    return x.repeat(s, axis=0).repeat(s, axis=1)


def depth_to_space(x, r):
    h, w, c = x.shape
    co = c // (r * r)
    return x.reshape(h, w, r, r, co).transpose(0, 2, 1, 3, 4).reshape(h * r, w * r, co)


def rdn(x, w, C, D, scale, shuffle=False):
    f_m1 = _conv(x, "F_m1", w)
    rdb_in = _conv(f_m1, "F_0", w)
    outs = []
    for d in range(1, D + 1):
        t = rdb_in
        for c in range(1, C + 1):
            t = np.concatenate([t, relu(_conv(t, f"F_{d}_{c}", w))], axis=2)
        rdb_in = _conv(t, f"LFF_{d}", w) + rdb_in
        outs.append(rdb_in)
    g = _conv(_conv(np.concatenate(outs, axis=2), "GFF_1", w), "GFF_2", w) + f_m1
    u = relu(_conv(relu(_conv(g, "UPN1", w)), "UPN2", w))
    u = _conv(u, "UPN3", w)
    u = depth_to_space(u, scale) if shuffle else upsample_nearest(u, scale)
    return _conv(u, "SR", w)


def rrdn(x, w, C, D, T, scale, beta=0.2):
    pre = _conv(x, "Pre_blocks_conv", w)
    x_ = pre
    for t in range(1, T + 1):
        block_in = x_
        for d in range(1, D + 1):
            u = x_
            for c in range(1, C + 1):
                u = np.concatenate([u, relu(_conv(u, f"F_{t}_{d}_{c}", w))], axis=2)
            x_ = x_ + _conv(u, f"LFF_{t}_{d}", w) * beta
        x_ = block_in + x_ * beta
    g = _conv(x_, "post_blocks_conv", w) + pre
    return _conv(depth_to_space(_conv(g, "PreShuffle", w), scale), "SR", w)


def hparams(w):
    """(kind, kwargs) read off the layer names and shapes."""
    if "F_m1" in w:
        C = sum(1 for k in w if k.startswith("F_1_"))
        D = sum(1 for k in w if k.startswith("F_") and k.endswith("_1") and k.count("_") == 2)
        up3 = w["UPN3"]["kernel"].shape[3]
        scale = int(round((up3 / 3) ** 0.5))
        return "rdn", dict(C=C, D=D, scale=scale, shuffle=w["SR"]["kernel"].shape[2] == 3)
    C = sum(1 for k in w if k.startswith("F_1_1_"))
    D = sum(1 for k in w if k.startswith("F_1_") and k.endswith("_1") and k.count("_") == 3)
    T = sum(1 for k in w if k.startswith("F_") and k.endswith("_1_1") and k.count("_") == 3)
    scale = int(round((w["PreShuffle"]["kernel"].shape[3] / 3) ** 0.5))
    return "rrdn", dict(C=C, D=D, T=T, scale=scale)


def forward(x_hwc, w):
    kind, hp = hparams(w)
    return (rdn if kind == "rdn" else rrdn)(x_hwc.astype(np.float64), w, **hp)


def round_kernels_fp16(w):
    """The weights with kernels rounded through fp16, as convert_keras.py --fp16 stores them."""
    return {k: {"kernel": v["kernel"].astype(np.float16).astype(np.float32), "bias": v["bias"]} for k, v in w.items()}


def runner(source, fp16=False):
    """A callable (x NCHW torch tensor, f64 flag) -> NCHW torch tensor for parity_real.py."""
    import torch
    from keras_io import read_keras

    w, _ = read_keras(source)
    if fp16:
        w = round_kernels_fp16(w)

    def f(x, f64):
        y = forward(x[0].permute(1, 2, 0).double().numpy(), w)
        if not f64:
            y = y.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1))[None].astype(np.float32))

    return f
