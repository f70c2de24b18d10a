#!/usr/bin/env bash
# Build the environment mmincnext runs in: a virtualenv (default .venv) with
# torch, mmcv 2.0.1 built from source with its compiled ops, mmengine, mmdet,
# mmsegmentation, mmyolo, the test tools and mmincnext itself (editable).
#
# mmcv 2.0.1 is the one version that mmdet 3.3.0 and mmsegmentation 1.2.2
# (2.0.0rc4 <= mmcv < 2.2.0) and mmyolo 0.6.0 (2.0.0rc4 <= mmcv < 2.1.0)
# all accept, with their version checks untouched.
#
# Idempotent: a second run with nothing changed checks the stamp and the
# imports and returns in seconds. Used by `make install` (and so by
# `make test` / `make demo`).
#
# Environment:
#   VENV=path            virtualenv to create/use (default .venv). VENV=system
#                        installs into the current python (an existing
#                        OpenMMLab env); nothing is created.
#   PYTHON=python3       interpreter used to create the virtualenv.
#   MMINCNEXT_CACHE=dir  where built mmcv wheels are kept (default
#                        ~/.cache/mmincnext), keyed by mmcv, torch version,
#                        Python tag and machine.
#   MAX_JOBS=n           parallel compile jobs for mmcv (default: all cores).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
CACHE=${MMINCNEXT_CACHE:-$HOME/.cache/mmincnext}
MMCV_VERSION=2.0.1
TORCH_PIN="torch==2.14.1 torchvision==0.29.1"

log() { printf '[setup] %s\n' "$*"; }

if [ "$VENV" = system ]; then
    PY=$(command -v "$PYTHON")
else
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    PY="$(cd "$VENV" && pwd)/bin/python"  # absolute: used from other dirs
fi
PIP=("$PY" -m pip --disable-pip-version-check)

stamp_file() {
    if [ "$VENV" = system ]; then echo "$ROOT/.mmincnext-env-stamp"; else echo "$VENV/.mmincnext-env-stamp"; fi
}
want_stamp=$(cat setup.py requirements/*.txt tools/setup_env.sh mmincnext/ops/csrc/* | sha256sum | cut -d' ' -f1)
check_imports='import torch, torchvision, mmcv, mmcv.ops, mmengine, mmdet, mmseg, mmyolo, onnx, onnxscript, onnxruntime, openvino, mmincnext
assert mmcv.__version__ == "'$MMCV_VERSION'", mmcv.__version__'

if [ -f "$(stamp_file)" ] && [ "$(cat "$(stamp_file)")" = "$want_stamp" ] \
        && "$PY" -c "$check_imports" >/dev/null 2>&1; then
    log "environment $VENV is up to date"
    exit 0
fi

# --- torch: keep a working user install, otherwise the pinned pair ----------
if "$PY" -c 'import torch, torchvision' >/dev/null 2>&1; then
    log "keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
    log "installing $TORCH_PIN (takes a few minutes)"
    "${PIP[@]}" install $TORCH_PIN
fi
"${PIP[@]}" install -q -r requirements/build.txt

# --- OpenMMLab packages and test tools (mmcv's own dependencies included) ---
log "installing mmengine / mmdet / mmseg and test requirements"
"${PIP[@]}" install -q -r requirements/runtime.txt -r requirements/tests.txt \
    -r requirements/deploy.txt

# --- mmcv with compiled ops, from a cached wheel or built once -------------
mmcv_ok() {
    "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1
}
if mmcv_ok; then
    log "mmcv $MMCV_VERSION with ops already installed"
else
    key=$("$PY" -c 'import platform, sys, torch; print(f"torch{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
    wheel_dir="$CACHE/wheels/mmcv-$MMCV_VERSION-$key"
    wheel=$(ls "$wheel_dir"/mmcv-*.whl 2>/dev/null | head -n1 || true)
    if [ -n "$wheel" ]; then
        log "installing cached mmcv wheel $wheel"
        "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel"
        if ! mmcv_ok; then
            log "cached wheel does not import mmcv.ops here; rebuilding (old wheel kept in $wheel_dir.bad)"
            rm -rf "$wheel_dir.bad" && mv "$wheel_dir" "$wheel_dir.bad"
            wheel=""
        fi
    fi
    if [ -z "$wheel" ]; then
        log "building mmcv $MMCV_VERSION from source with its C++ ops:"
        log "this takes 7-30 minutes on 2 cores, once; the wheel is cached in $wheel_dir"
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation \
            "mmcv==$MMCV_VERSION" -d "$work"
        tar xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
        src="$work/mmcv-$MMCV_VERSION"
        # torch >= 2.14 headers need C++20; mmcv's setup.py hard-codes the
        # standard (2.0.1: C++14, 2.1.0: C++17)
        if "$PY" -c 'import sys, torch; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(0 if v >= (2, 14) else 1)'; then
            sed -i "s/'-std=c++1[47]'/'-std=c++20'/g" "$src/setup.py"
            grep -q "c++20" "$src/setup.py" || { log "no C++ standard flag found in mmcv's setup.py"; exit 1; }
            log "torch >= 2.14: compiling with -std=c++20"
        fi
        mkdir -p "$wheel_dir"
        total=$(ls "$src"/mmcv/ops/csrc/pytorch/*.cpp "$src"/mmcv/ops/csrc/pytorch/cpu/*.cpp | wc -l)
        start=$(date +%s)
        # progress: one line per compiled file, from ninja's [n/N] counter
        (cd "$src" && MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip --disable-pip-version-check \
            wheel -v --no-build-isolation --no-deps . -w "$wheel_dir" 2>&1) \
            | tee "$work/build.log" \
            | grep --line-buffered -oE '^\s*\[[0-9]+/[0-9]+\] c\+\+' \
            | while read -r line; do
                n=$(echo "$line" | grep -oE '[0-9]+/[0-9]+')
                printf '[setup] mmcv compile %s (~%s files, %ds elapsed)\n' "$n" "$total" $(( $(date +%s) - start ))
            done || true  # success is judged by the wheel below
        wheel=$(ls "$wheel_dir"/mmcv-*.whl 2>/dev/null | head -n1 || true)
        if [ -z "$wheel" ]; then
            tail -40 "$work/build.log"
            log "mmcv build failed (log above)"
            exit 1
        fi
        log "mmcv built in $(( $(date +%s) - start ))s"
        "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel"
        mmcv_ok || { log "mmcv.ops does not import after the build"; exit 1; }
    fi
fi

# --- mmincnext (editable), with its C++ kernel (mmincnext/ops) -----------
log "installing mmincnext and compiling its CPU kernels, mmincnext._ext (AVX-512) and _ext_avx2 (AVX2) (5-12 minutes on 2 cores)"
# pip installs the package alone (MMINCNEXT_WITH_OPS=0) and the kernel is
# built once, in place: pip < 25 installs a setup.py project through
# `setup.py develop`, which builds in an isolated environment without torch
# and would skip it; newer pips would compile it a second time.
MMINCNEXT_WITH_OPS=0 "${PIP[@]}" install -q --no-deps --no-build-isolation -e .
ext_log=$(mktemp)
"$PY" setup.py build_ext --inplace >"$ext_log" 2>&1 || { tail -30 "$ext_log"; exit 1; }
grep -h 'was not built' "$ext_log" || true  # OptionalBuildExtension's warning
rm -f "$ext_log"
"$PY" -c 'import mmincnext.ops as ops; print("[setup] CPU kernels:", ops.kernels.kernels_isa() if ops.cpu_kernels_available() else "not available here, PyTorch kernels are used")'
"$PY" -c "$check_imports"
echo "$want_stamp" > "$(stamp_file)"
log "environment ready: $PY ($("$PY" -c 'import torch, mmcv, mmdet, mmseg, mmyolo; print(f"torch {torch.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, mmyolo {mmyolo.__version__}")'))"
