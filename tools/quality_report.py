#!/usr/bin/env python3
"""Quality report: PSNR/SSIM of every shipped model (plain and with self-ensemble) and of the
bicubic baseline on the benchmark sets in ../shared/data, measured by our own release binary
(`superres eval --json`), written as docs/quality.md, plus a crop grid (bicubic, model, ground
truth) as docs/quality_crops.png.

Developer machines only (the data lives in ../shared). Every number in the report comes from the
binary; Python only runs it, formats the table and composes the picture.

Usage, from the repository root:

    cargo build --release
    /work/venv/bin/python tools/quality_report.py [--bin target/release/superres] [--no-tta]

The crop grid needs numpy and pillow. Its bicubic column is computed with
../shared/tools/matlab_imresize.py, the numpy MATLAB port that our resizer reproduces bit for bit
(tests/quality.rs), and its model column with `superres upscale`.
"""
import argparse, datetime, json, os, platform, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, '..', 'shared')
DATA = os.path.join(SHARED, 'data')

# Published bicubic baselines (Y, crop = scale; Vid4 crop 0, mean of clips), from
# ../shared/data/TABLES.md, shown beside ours.
PUBLISHED_BICUBIC = {
    ('Set5', 2): '33.66/0.9299', ('Set5', 3): '30.39/0.8682', ('Set5', 4): '28.42/0.8104',
    ('Set14', 2): '30.24/0.8688', ('Set14', 3): '27.55/0.7742', ('Set14', 4): '26.00/0.7027',
    ('Vid4', 4): '23.78/0.6347 (4 clips)',
}

# Crops for the picture: (set, image, top, left) in HR pixels, chosen for fine texture.
CROPS = [('Set14', 'zebra', 120, 300), ('Urban100', 'img_004', 300, 560)]
CROP = 128


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f'{" ".join(cmd)} failed ({p.returncode}):\n{p.stderr}')
    return p.stdout


def evaluate(binary, method, lr, hr, scale, crop=None, tta=False):
    cmd = [binary, 'eval', '-m', method, '--lr', lr, '--hr', hr, '--json']
    if method != 'bicubic':
        cmd += ['-s', str(scale)]
    else:
        cmd += ['--scale', str(scale)]
    if crop is not None:
        cmd += ['--crop', str(crop)]
    if tta:
        cmd += ['--tta']
    t0 = time.time()
    out = json.loads(run(cmd))
    out['seconds'] = time.time() - t0
    return out


def vid4_lr_with_gt(tmp):
    """A folder of the Vid4 BIx4 clips that have ground truth here (calendar, walk), as links."""
    root = os.path.join(tmp, 'vid4_lr')
    for clip in sorted(os.listdir(os.path.join(DATA, 'vsr', 'Vid4', 'GT'))):
        src = os.path.join(DATA, 'vsr', 'Vid4', 'BIx4', clip)
        os.makedirs(os.path.join(root, clip))
        for f in sorted(os.listdir(src)):
            os.symlink(os.path.abspath(os.path.join(src, f)), os.path.join(root, clip, f))
    return root


def fmt(score):
    return f"{score['psnr']:.2f}/{score['ssim']:.4f}"


def crop_grid(binary, model, scale, out_png, tmp):
    import numpy as np
    from PIL import Image, ImageDraw
    sys.path.insert(0, os.path.join(SHARED, 'tools'))
    import matlab_imresize as M
    rows = []
    for setn, name, top, left in CROPS:
        lr_path = os.path.join(DATA, 'sisr', setn, f'LRbicx{scale}', name + '.png')
        hr_path = os.path.join(DATA, 'sisr', setn, 'HR', name + '.png')
        if not (os.path.exists(lr_path) and os.path.exists(hr_path)):
            continue
        lr = np.asarray(Image.open(lr_path).convert('RGB'))
        hr = np.asarray(Image.open(hr_path).convert('RGB'))
        bic = M.imresize(lr, scale)
        sr_path = os.path.join(tmp, f'{setn}_{name}_sr.png')
        run([binary, 'upscale', '-m', model, '-s', str(scale), lr_path, '-o', sr_path, '-q'])
        sr = np.asarray(Image.open(sr_path).convert('RGB'))
        tiles = [a[top:top + CROP, left:left + CROP] for a in (bic, sr, hr)]
        rows.append(np.concatenate(tiles, 1))
    if not rows:
        return False
    label_h = 18
    grid = np.concatenate(rows, 0)
    canvas = Image.new('RGB', (grid.shape[1], grid.shape[0] + label_h), 'white')
    canvas.paste(Image.fromarray(grid), (0, label_h))
    d = ImageDraw.Draw(canvas)
    for i, t in enumerate(['bicubic', model, 'ground truth']):
        d.text((i * CROP + 4, 3), t, fill='black')
    canvas.save(out_png, optimize=True)
    return True


def tta_options(args, m):
    if args.no_tta or not (args.tta_all or m.get('default')):
        return [False]
    return [False, True]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bin', default=os.path.join(ROOT, 'target', 'release', 'superres'))
    ap.add_argument('--no-tta', action='store_true', help='skip the self-ensemble runs (x8 slower)')
    ap.add_argument('--tta-all', action='store_true',
                    help='self-ensemble every model (default: only the default model, as the others are slow)')
    ap.add_argument('--out', default=os.path.join(ROOT, 'docs'))
    args = ap.parse_args()
    if not os.path.isdir(DATA):
        sys.exit(f'{DATA} is missing: the report needs the benchmark data of a developer machine')
    binary = args.bin
    models = json.loads(run([binary, 'models', '--json']))
    cpu = json.loads(run([binary, 'info', models[0]['name'], '--json']))['cpu_level'] if models else '?'
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp()
    vid4_lr = vid4_lr_with_gt(tmp)
    sets = []
    for setn in ('Set5', 'Set14', 'Urban100'):
        for s in (2, 3, 4):
            lr = os.path.join(DATA, 'sisr', setn, f'LRbicx{s}')
            if os.path.isdir(lr):
                sets.append((setn, s, lr, os.path.join(DATA, 'sisr', setn, 'HR'), None))
    sets.append(('Vid4', 4, vid4_lr, os.path.join(DATA, 'vsr', 'Vid4', 'GT'), 0))

    results = {}  # (set, scale, method) -> report
    scales_needed = sorted({s for m in models for s in m['scales']})
    for setn, s, lr, hr, crop in sets:
        if s not in scales_needed:
            continue
        print(f'{setn} x{s}: bicubic', flush=True)
        results[(setn, s, 'bicubic')] = evaluate(binary, 'bicubic', lr, hr, s, crop)
        for m in models:
            if s not in m['scales']:
                continue
            for tta in tta_options(args, m):
                label = m['name'] + (' + TTA x8' if tta else '')
                print(f'{setn} x{s}: {label}', flush=True)
                results[(setn, s, label)] = evaluate(binary, m['name'], lr, hr, s, crop, tta)

    lines = [
        '# Quality report',
        '',
        'PSNR (dB) / SSIM of the shipped models and of the bicubic baseline, measured by our own binary',
        '(`superres eval --json`) with `tools/quality_report.py` on the benchmark data of the developer',
        'machines (`../shared/data`; not distributed with the project). Regenerate with',
        '`cargo build --release && python tools/quality_report.py`.',
        '',
        '- Y channel of BT.601 (MATLAB `rgb2ycbcr`, unrounded; gray images as they are), border crop = scale',
        '  for the image sets and 0 for Vid4, SSIM of Wang et al.; the same numbers as `metrics.py`',
        '  in `../shared/tools` to 1e-6 dB (tests/quality.rs).',
        '- LR inputs are the official MATLAB bicubic files (Urban100 x2/x3 made by the bit-exact port); Urban100',
        '  here is its first 10 images, so its means are not comparable with published full-set means.',
        '- Vid4: the BIx4 frames of the two clips with ground truth here (calendar, walk), each model run frame',
        '  by frame (no temporal model is shipped); the mean is over the clips.',
        '- TTA x8: self-ensemble (`--tta`), the 8 flips/transposes averaged; 8x the compute.',
        '- Published bicubic numbers (EDSR paper Table 6; Vid4 from the VSR literature) are shown for',
        '  reference; ours differ in the last digit of SSIM because the published bicubic SSIMs come from',
        '  older evaluation code (see `../shared/data/TABLES.md`).',
        '',
        f'Measured {datetime.date.today().isoformat()} on {platform.machine()} ({cpu} kernels); seconds are',
        'wall time of the whole `eval` call (decoding and scoring included).',
        '',
    ]
    for s in scales_needed:
        methods = ['bicubic'] + [m['name'] + (' + TTA x8' if t else '') for m in models if s in m['scales']
                                 for t in tta_options(args, m)]
        lines += [f'## x{s}', '']
        header = '| set | ' + ' | '.join(methods) + ' | published bicubic |'
        lines += [header, '|' + '---|' * (len(methods) + 2)]
        for setn, ss, *_ in sets:
            if ss != s:
                continue
            cells = []
            for m in methods:
                r = results.get((setn, s, m))
                cells.append(fmt(r['mean']) if r else '')
            pub = PUBLISHED_BICUBIC.get((setn, s), '')
            label = 'Vid4 (calendar, walk)' if setn == 'Vid4' else setn
            lines.append(f'| {label} | ' + ' | '.join(cells) + f' | {pub} |')
        lines.append('')
        vid = [(m, results.get(('Vid4', s, m))) for m in methods]
        if any(r for _, r in vid):
            lines += ['Vid4 per clip:', '', '| clip | ' + ' | '.join(methods) + ' |', '|' + '---|' * (len(methods) + 1)]
            clips = [c['name'] for c in next(r for _, r in vid if r)['clips']]
            for c in clips:
                cells = []
                for _, r in vid:
                    cs = [x for x in r['clips'] if x['name'] == c] if r else []
                    cells.append(fmt(cs[0]) if cs else '')
                lines.append(f'| {c} | ' + ' | '.join(cells) + ' |')
            lines.append('')
        # Self-ensemble gains.
        if not args.no_tta:
            gains = []
            for m in models:
                if s not in m['scales']:
                    continue
                for setn, ss, *_ in sets:
                    if ss != s:
                        continue
                    a, b = results.get((setn, s, m['name'])), results.get((setn, s, m['name'] + ' + TTA x8'))
                    if a and b:
                        gains.append(f"| {m['name']} | {setn} | {b['mean']['psnr'] - a['mean']['psnr']:+.3f} dB | "
                                     f"{b['mean']['ssim'] - a['mean']['ssim']:+.4f} | {a['seconds']:.1f} s | {b['seconds']:.1f} s |")
            if gains:
                lines += ['Self-ensemble gain (TTA x8 minus plain):', '',
                          '| model | set | PSNR | SSIM | time plain | time TTA |', '|---|---|---|---|---|---|'] + gains + ['']

    if models:
        m = next((m for m in models if m.get('default')), models[0])
        s = m['scales'][-1]
        png = os.path.join(args.out, 'quality_crops.png')
        if crop_grid(binary, m['name'], s, png, tmp):
            kb = os.path.getsize(png) / 1024
            lines += ['## Crops', '',
                      f'{CROP}x{CROP} HR-pixel crops at x{s} (Set14 `zebra`, Urban100 `img_004`): bicubic, '
                      f"`{m['name']}`, ground truth.", '',
                      '![bicubic, model, ground truth](quality_crops.png)', '']
            print(f'{png}: {kb:.0f} KB')
    with open(os.path.join(args.out, 'quality.md'), 'w') as f:
        f.write('\n'.join(lines))
    raw = {f'{k[0]} x{k[1]} {k[2]}': v for k, v in results.items()}
    print(json.dumps({k: v['mean'] for k, v in raw.items()}, indent=1))


if __name__ == '__main__':
    main()
