#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored) the Python 3.12 wheels that tools/gpu_check.sh needs on the
# GPU machine and that its image lacks (it has torch, pytest, hypothesis, tabulate, tqdm, pyyaml,
# portalocker, pillow, matplotlib, ninja; not fvcore and its iopath/yacs/termcolor, expecttest,
# pycocotools). Pure-Python wheels except pycocotools; about 1 MB in all.
#   usage: tools/download_gpu_wheels.sh [DEST]      (default .whl)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.whl}
mkdir -p "$dest"
pip_download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$dest" "$@"
}
# fvcore and iopath publish only sdists: build their (pure-Python) wheels here.
python3 -m pip wheel -q --no-deps --no-build-isolation -w "$dest" "fvcore==0.1.5.post20221221" "iopath==0.1.10" 2>/dev/null \
  || python3 -m pip wheel -q --no-deps -w "$dest" "fvcore==0.1.5.post20221221" "iopath==0.1.10"
pip_download "yacs==0.1.8" "termcolor>=2,<4" "expecttest==0.3.0" "pycocotools==2.0.10"
ls -l "$dest"
du -sh "$dest"
