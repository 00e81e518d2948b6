#!/usr/bin/env python3
"""Fixtures for the MATLAB-exact resizer, the BD degradation and the PSNR/SSIM metrics.

Developer machines only: the references are the numpy oracles in ../shared/tools
(matlab_imresize.py, verified bit-exact against the official MATLAB LR files; degrade.py; metrics.py,
verified against RCAN's MATLAB results). CI only reads what this writes:

  tests/fixtures/quality/inputs/*.png       three small images (8-bit RGB 30x26, 8-bit gray, 16-bit gray+alpha)
  tests/fixtures/quality/expected/*.png     their BI x2/x3/x4 and BD x4 downscales, and the bicubic
                                            upscales of the BI LR images
  tests/fixtures/quality/expected.json      PSNR/SSIM of bicubic-upscaled LR vs modcropped HR
  tests/fixtures/quality/shared_reference.json
                                            per-image reference PSNR/SSIM of the bicubic baseline on
                                            ../shared/data (Set5/Set14/Urban100 x2-x4, Vid4 calendar
                                            and walk BIx4 at crop 0), read by tests/quality.rs when
                                            ../shared is present

Usage (from the repository root):  /work/venv/bin/python tools/make_quality_fixtures.py [--check]
--check regenerates into a temporary folder and compares with the committed files.
"""
import argparse, glob, json, math, os, shutil, sys, tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, '..', 'shared')
sys.path.insert(0, os.path.join(SHARED, 'tools'))
import matlab_imresize as M  # noqa: E402
import degrade as D  # noqa: E402
from metrics import psnr, ssim  # noqa: E402


def imresize_int(img, scale, maxv):
    """matlab_imresize.imresize for any integer range (the oracle hard-codes uint8): the same
    contributions, rows then columns, rounding half up and saturating after each pass."""
    h, w = img.shape[:2]
    oh, ow = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    a = img.astype(np.float64)
    for dim, out_len in ((0, oh), (1, ow)):
        wts, ix = M.contributions(a.shape[dim], out_len, scale)
        b = np.moveaxis(a, dim, 0)
        a = np.moveaxis(np.einsum('op,op...->o...', wts, b[ix]), 0, dim)
        a = np.clip(np.floor(a + 0.5), 0, maxv)
    return a


def bd_int(img, maxv, scale=4, ks=13):
    """degrade.bd_duf for any integer range and channel count."""
    k = D.gaussian_kernel_duf(ks, 0.4 * scale)
    p = ks // 2
    a = img.astype(np.float64)
    if a.ndim == 2:
        a = a[..., None]
    a = np.pad(a, ((p, p), (p, p), (0, 0)), mode='reflect')
    import scipy.ndimage as nd
    out = np.stack([nd.correlate(a[..., c], k, mode='constant')[p:-p, p:-p][::scale, ::scale]
                    for c in range(a.shape[2])], -1)
    out = np.clip(np.floor(out + 0.5), 0, maxv)
    return out[..., 0] if img.ndim == 2 else out


def save(path, a, mode):
    a = np.asarray(a)
    if mode == 'RGB':
        Image.fromarray(a.astype(np.uint8), 'RGB').save(path)
    elif mode == 'L':
        Image.fromarray(a.astype(np.uint8), 'L').save(path)
    elif mode == 'LA16':
        save_png16(path, a.astype(np.uint16))
    else:
        raise ValueError(mode)


def save_png16(path, a):
    """PIL cannot write 16-bit gray+alpha PNGs; write one with zlib (colour type 4, depth 16)."""
    import struct, zlib
    h, w, c = a.shape
    assert c == 2
    raw = b''.join(b'\x00' + a[y].astype('>u2').tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, 4, 0, 0, 0))
    png += chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b'')
    with open(path, 'wb') as f:
        f.write(png)


def make_inputs():
    rs = np.random.RandomState(20240606)
    y, x = np.mgrid[0:26, 0:30]
    base = 128 + 90 * np.sin(x / 3.1) * np.cos(y / 4.3)
    rgb = np.stack([base, base[::-1] * 0.8 + 30, 255 - base], -1) + rs.normal(0, 18, (26, 30, 3))
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    y, x = np.mgrid[0:23, 0:25]
    gray = np.clip(np.round(120 + 100 * np.sin(x * y / 17.0) + rs.normal(0, 20, (23, 25))), 0, 255).astype(np.uint8)
    y, x = np.mgrid[0:14, 0:19]
    g16 = np.clip(np.round(30000 + 25000 * np.cos(x / 2.7 + y / 3.3) + rs.normal(0, 3000, (14, 19))), 0, 65535)
    a16 = np.clip(np.round(65535 * (x / 18.0) + rs.normal(0, 2000, (14, 19))), 0, 65535)
    la16 = np.stack([g16, a16], -1).astype(np.uint16)
    return {'rgb_30x26': (rgb, 'RGB', 255), 'gray_25x23': (gray, 'L', 255), 'graya16_19x14': (la16, 'LA16', 65535)}


def write_fixtures(out):
    os.makedirs(os.path.join(out, 'inputs'), exist_ok=True)
    os.makedirs(os.path.join(out, 'expected'), exist_ok=True)
    expected = {'downscale': [], 'metrics': []}
    for name, (img, mode, maxv) in make_inputs().items():
        save(os.path.join(out, 'inputs', name + '.png'), img, mode)
        for s in (2, 3, 4):
            hr = M.modcrop(img, s)
            lr = imresize_int(hr, 1 / s, maxv)
            lr_name = f'{name}_bix{s}.png'
            save(os.path.join(out, 'expected', lr_name), lr, mode)
            expected['downscale'].append({'input': name + '.png', 'kernel': 'bicubic', 'scale': s, 'output': lr_name})
            if maxv == 255:
                # The bicubic baseline: MATLAB imresize(lr, s) (the oracle's own uint8 routine).
                up = M.imresize(lr.astype(np.uint8), s)
                assert np.array_equal(up, imresize_int(lr, s, 255))
                up_name = f'{name}_bix{s}_up.png'
                save(os.path.join(out, 'expected', up_name), up, mode)
                for crop in (0, s):
                    for y_channel in (True, False):
                        if mode == 'L' and not y_channel:
                            continue
                        expected['metrics'].append({
                            'sr': up_name, 'hr': name + '.png', 'scale': s, 'crop': crop,
                            'channels': 'y' if y_channel else 'rgb',
                            'psnr': psnr(hr, up, crop, y_channel), 'ssim': float(ssim(hr, up, crop, y_channel)),
                        })
        hr = M.modcrop(img, 4)
        bd = bd_int(hr, maxv)
        bd_name = f'{name}_bdx4.png'
        save(os.path.join(out, 'expected', bd_name), bd, mode)
        expected['downscale'].append({'input': name + '.png', 'kernel': 'bd', 'scale': 4, 'output': bd_name})
    # Cross-check the BD extension against the oracle itself on the RGB image.
    rgb = make_inputs()['rgb_30x26'][0]
    assert np.array_equal(D.bd_duf(M.modcrop(rgb, 4)), bd_int(M.modcrop(rgb, 4), 255))
    with open(os.path.join(out, 'expected.json'), 'w') as f:
        f.write('{\n"downscale": ' + json_rows(expected['downscale']) + ',\n"metrics": '
                + json_rows(expected['metrics']) + '\n}\n')


def json_rows(rows):
    """A JSON array with one object per line (readable diffs)."""
    return '[\n' + ',\n'.join(json.dumps(r) for r in rows) + '\n]'


def shared_reference(out):
    data = os.path.join(SHARED, 'data')
    rows = []
    for setn in ('Set5', 'Set14', 'Urban100'):
        for s in (2, 3, 4):
            for f in sorted(glob.glob(f'{data}/sisr/{setn}/LRbicx{s}/*.png')):
                lr = np.asarray(Image.open(f))
                hr = np.asarray(Image.open(f.replace(f'LRbicx{s}', 'HR')))
                sr = M.imresize(lr, s)
                hr = hr[:sr.shape[0], :sr.shape[1]]
                rows.append({'set': setn, 'scale': s, 'crop': s, 'name': os.path.splitext(os.path.basename(f))[0],
                             'psnr': psnr(hr, sr, s), 'ssim': float(ssim(hr, sr, s))})
    for clip in ('calendar', 'walk'):
        for f in sorted(glob.glob(f'{data}/vsr/Vid4/BIx4/{clip}/*.png')):
            lr = np.asarray(Image.open(f))
            hr = np.asarray(Image.open(f.replace('BIx4', 'GT')))
            sr = M.imresize(lr, 4)
            rows.append({'set': 'Vid4', 'scale': 4, 'crop': 0,
                         'name': clip + '/' + os.path.splitext(os.path.basename(f))[0],
                         'psnr': psnr(hr, sr, 0), 'ssim': float(ssim(hr, sr, 0))})
    with open(os.path.join(out, 'shared_reference.json'), 'w') as f:
        f.write(json_rows(rows) + '\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--check', action='store_true')
    args = ap.parse_args()
    dest = os.path.join(ROOT, 'tests', 'fixtures', 'quality')
    out = tempfile.mkdtemp() if args.check else dest
    write_fixtures(out)
    shared_reference(out)
    if args.check:
        bad = []
        for dirpath, _, files in os.walk(out):
            for fn in files:
                rel = os.path.relpath(os.path.join(dirpath, fn), out)
                a = open(os.path.join(out, rel), 'rb').read()
                b = open(os.path.join(dest, rel), 'rb').read() if os.path.exists(os.path.join(dest, rel)) else None
                if a != b:
                    bad.append(rel)
        shutil.rmtree(out)
        if bad:
            sys.exit('differ from the committed fixtures: ' + ', '.join(bad))
        print('fixtures match')


if __name__ == '__main__':
    main()
