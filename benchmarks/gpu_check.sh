#!/bin/sh
# The GPU check, with the wheels it needs (docs/performance.md, "GPU check").
#
#   benchmarks/gpu_check.sh wheels    here, with pip and a registry: download into .whl/ the wheels
#                                     that the device machine lacks (Python 3.12, x86-64)
#   benchmarks/gpu_check.sh [ARGS]    there: install .whl/*.whl (when present) into /tmp/site, then
#                                     run benchmarks/gpu_check.py ARGS with wmcli on the path
set -eu
cd "$(dirname "$0")/.."
# Keep in step with WHEELS in benchmarks/gpu_check.py (tests/test_gpu_check.py checks it).
WHEELS="gymnasium==1.4.0 ale-py==0.12.1 farama-notifications==0.0.4"
if [ "${1:-}" = wheels ]; then
  # shellcheck disable=SC2086
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $WHEELS
  exit 0
fi
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python3 benchmarks/gpu_check.py "$@"
