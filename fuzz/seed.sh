#!/usr/bin/env bash
# Seed corpora for the fuzz targets from the test fixtures (fuzz/corpus is not committed).
# Run from anywhere; needs only bash and python3 (pillow, when present, adds JPEG/WebP/BMP/TIFF
# seeds for the image targets).
set -euo pipefail
cd "$(dirname "$0")"
fx=../tests/fixtures
small() { find "$@" -type f -size -64k; }
mkdir -p corpus/{safetensors,pth,image_decode,upscale,ncnn,y4m,cli_paths}
small "$fx" -name '*.safetensors' | while read -r f; do cp "$f" corpus/safetensors/; done
small "$fx" -name '*.pth' -o -name '*.pt' | while read -r f; do cp "$f" "corpus/pth/$(basename "$f")"; done
small "$fx" -name '*.png' | while read -r f; do
  cp "$f" "corpus/image_decode/$(basename "$f")"
  cp "$f" "corpus/upscale/$(basename "$f")"
done
for p in "$fx"/models/*_ncnn.param; do
  { cat "$p"; printf '\377'; cat "${p%.param}.bin"; } > "corpus/ncnn/$(basename "$p" .param)"
done
python3 - <<'PY'
import os, io
def y4m(name, header, frame_bytes, n=2):
    with open(os.path.join("corpus/y4m", name), "wb") as f:
        f.write(header + b"\n")
        for i in range(n):
            f.write(b"FRAME\n" + bytes((i * 7 + k) % 256 for k in range(frame_bytes)))
for cs, per in [("420jpeg", 1.5), ("420mpeg2", 1.5), ("420paldv", 1.5), ("422", 2), ("444", 3), ("mono", 1),
                ("420p10", 3), ("422p12", 4), ("444p10", 6), ("mono12", 2)]:
    y4m(f"{cs}.y4m", f"YUV4MPEG2 W4 H2 F25:1 Ip A1:1 C{cs} XCOLORRANGE=FULL".encode(), int(8 * per))
y4m("odd.y4m", b"YUV4MPEG2 W3 H3 F30000:1001 It A10:11 C420jpeg", 9 + 2 * 4, 1)
seeds = [b"0/2\0png\0out\0in", b"1/3\0\0-\0one.png", b"0/1\0jpg\0out/x.png\0one.png\0in/a.png",
         b"2/4\0webp\0new\0in\0in/sub", b"\0\0-\0-"]
for i, s in enumerate(seeds):
    open(f"corpus/cli_paths/seed{i}", "wb").write(s)
try:
    from PIL import Image
    im = Image.new("RGB", (7, 5), (10, 200, 30))
    for fmt, ext in [("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tiff")]:
        for t in ("image_decode", "upscale"):
            im.save(f"corpus/{t}/seed.{ext}", fmt)
except ImportError:
    pass
PY
for t in corpus/*; do echo "$t: $(ls "$t" | wc -l) files"; done
