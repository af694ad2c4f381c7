#!/usr/bin/env bash
# Creates bench/.venv with the pinned Python packages the reference scripts (bench/*.py) need:
# numpy + scipy + scikit-learn + safetensors for the SVD comparison, torch for the training comparison.
# The PyPI torch wheel pulls about 5 GB of CUDA libraries (the CPU-only index is not reachable from every
# machine); `bench/setup.sh --no-torch` skips it, and the training comparison then reports PyTorch as
# not installed. Needs python3 (3.10+) with venv. Usage: bash bench/setup.sh [--no-torch]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
with_torch=1
[[ "${1:-}" == "--no-torch" ]] && with_torch=0

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
pins=(numpy==2.4.6 scipy==1.17.1 scikit-learn==1.9.1 joblib==1.6.0 threadpoolctl==3.8.0 safetensors==0.8.0)
if [[ $with_torch == 1 ]]; then pins+=(torch==2.15.0 transformers==5.24.0); fi
"$venv/bin/python" -m pip install --disable-pip-version-check -q "${pins[@]}"
"$venv/bin/python" "$here/py_versions.py"
