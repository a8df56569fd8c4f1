#!/bin/sh
# Set up wmcli in a virtual environment: ./scripts/install.sh [--test] [--venv DIR]
#
# Makes DIR (default .venv) unless a virtual environment is already active, installs the
# right torch build first, then wmcli itself (editable) with its extras:
#   - a machine with an NVIDIA GPU (nvidia-smi lists one) gets PyPI's CUDA build of torch;
#   - any other machine gets a CPU build: a local CPU wheel when pip can see one (no download),
#     else torch from pip's configured index, or from WMCLI_TORCH_INDEX when it is set (e.g.
#     PyTorch's own CPU-only index, whose address PyTorch's install page gives).
# WMCLI_TORCH=cpu or WMCLI_TORCH=cuda overrides the choice. Every package comes from pip's own
# configuration (pip.conf, PIP_INDEX_URL); this script names no package index.
# --test adds the test tools (pytest, MinAtar, matplotlib, tensorboard, rliable).
set -eu
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0
extras="minatar"
venv=.venv
while [ $# -gt 0 ]; do
  case "$1" in
    --test) extras="test"; shift ;;
    --venv) venv="$2"; shift 2 ;;
    *) echo "install.sh: unknown option $1 (use --test, --venv DIR)" >&2; exit 2 ;;
  esac
done

if [ -n "${VIRTUAL_ENV:-}" ]; then
  py="$VIRTUAL_ENV/bin/python"
else
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  py="$venv/bin/python"
fi
pip="$py -m pip"

choice="${WMCLI_TORCH:-}"
if [ -z "$choice" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then choice=cuda; else choice=cpu; fi
fi

if $py -c "import torch" >/dev/null 2>&1; then
  echo "install.sh: torch $($py -c 'import torch; print(torch.__version__)') already installed" >&2
elif [ "$choice" = cuda ]; then
  echo "install.sh: installing torch $TORCH_VERSION (CUDA build)" >&2
  $pip install "torch==$TORCH_VERSION"
else
  tmp=$(mktemp -d)
  if $pip download --quiet --no-deps --no-index -d "$tmp" "torch==$TORCH_VERSION" >/dev/null 2>&1 \
     && ls "$tmp" | grep -q '+cpu'; then
    echo "install.sh: installing torch $TORCH_VERSION (CPU build, local wheel)" >&2
    $pip install "torch==$TORCH_VERSION"
  elif [ -n "${WMCLI_TORCH_INDEX:-}" ]; then
    echo "install.sh: installing torch $TORCH_VERSION (CPU build) from $WMCLI_TORCH_INDEX" >&2
    $pip install "torch==$TORCH_VERSION" --index-url "$WMCLI_TORCH_INDEX"
  else
    echo "install.sh: installing torch $TORCH_VERSION from pip's configured index" >&2
    echo "install.sh: (on Linux that may be a CUDA build of several GB; set WMCLI_TORCH_INDEX to PyTorch's CPU-only index for a small one)" >&2
    $pip install "torch==$TORCH_VERSION"
  fi
  rm -rf "$tmp"
fi

$pip install -e ".[$extras]"
echo "install.sh: done; run $(dirname "$py")/wmcli --help" >&2
