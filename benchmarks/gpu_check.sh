#!/usr/bin/env bash
# The GPU check, for a session that is lent a GPU machine whose python3 has torch but lacks some
# of focalbench's pure-Python dependencies (benchmarks/RESULTS.md, "Running the GPU check").
#
#   here, once:        bash benchmarks/gpu_check.sh wheels      # the missing wheels into .whl/
#   on the GPU machine: bash benchmarks/gpu_check.sh run [OUT]  # install .whl/ + project, check
#
# `run` takes about 8 minutes: the gpu-marked tests (≤ 60 s), then benchmarks/gpu_check.py
# (--budget-s 420: parts that would overrun are skipped, and say so). Tables and logs go to OUT
# (default $OUT, else ./gpu-check). Extra arguments after OUT reach gpu_check.py, e.g.
# `run "$OUT" --dataset drive --data-dir .gpu-data`.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the GPU image lacks (its package list: the device docs' KINDS.md). smp's own requirements
# (huggingface-hub, numpy, pillow, safetensors, timm, torch, torchvision, tqdm) are all there.
WHEELS=(segmentation-models-pytorch==0.6.0 rarfile==4.5)

case "${1:-run}" in
wheels)
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    ;;
run)
    out="${2:-${OUT:-gpu-check}}"
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    # The project itself, without touching the image's packages (no index there, no build deps).
    python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . \
        || echo "editable install failed; running from PYTHONPATH=$PWD"
    python3 -c "import torch, segmentation_models_pytorch as smp, focalbench; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'smp', smp.__version__, \
'focalbench', focalbench.__file__)"
    timeout 60 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_step.py 2>&1 \
        | tee "$out/gpu_tests.log" || true
    timeout 450 python3 benchmarks/gpu_check.py --device cuda --out "$out" "${@:3}" 2>&1 \
        | tee "$out/gpu_check.log"
    ;;
*)
    echo "usage: bash benchmarks/gpu_check.sh wheels | run [OUT] [gpu_check.py options]" >&2
    exit 2
    ;;
esac
