#!/usr/bin/env bash
# Rebuild the shipped model files in weights/ from the published originals in ../shared/weights
# (developer machines only). Every conversion is checked by `superres convert` itself: the written
# file must reproduce the source model's output exactly. Keras / TF.js models go through
# tools/convert_keras.py first (see weights/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
S=../shared/weights
cargo build --release --quiet
B=target/release/superres
conv() { "$B" convert "$1" -o "weights/$2.safetensors" | tail -1; }

conv "$S/realesrgan/realesr-animevideov3.pth" realesr-animevideov3
conv "$S/realesrgan/realesrgan-x4plus.param" realesrgan-x4plus
conv "$S/waifu2x/upconv_7_anime_style_art_rgb/scale2.0x_model.param" waifu2x-upconv7-anime
for n in 0 1 2 3; do
    conv "$S/waifu2x/upconv_7_anime_style_art_rgb/noise${n}_scale2.0x_model.param" "waifu2x-upconv7-anime-noise$n"
done
conv "$S/waifu2x/upconv_7_photo/scale2.0x_model.param" waifu2x-upconv7-photo
conv "$S/waifu2x/cunet/scale2.0x_model.param" waifu2x-cunet

# idealo RDN x2: Keras HDF5 -> our safetensors (fp16 storage), then checked by `superres convert`.
"${PYTHON:-/work/venv/bin/python}" tools/convert_keras.py "$S/idealo/rdn-psnr-small-x2.h5" -o target/idealo-rdn-x2.raw.safetensors --fp16
conv target/idealo-rdn-x2.raw.safetensors idealo-rdn-x2

sha256sum weights/*.safetensors
