#!/usr/bin/env bash
# Bazel entry point of dlrm_test.py: Debian's Python (torch 1.13, numpy),
# never the first python3 on PATH, which may lack torch. protoc (for the job
# files' check) comes from PATH.
set -euo pipefail
python=/usr/bin/python3
if ! "$python" -c 'import torch, numpy' 2>/dev/null; then
  echo "FAIL: $python cannot import torch and numpy: install python3-torch python3-numpy (tools/setup.sh)" >&2
  exit 1
fi
export PYTHONDONTWRITEBYTECODE=1
exec "$python" examples/dlrm/dlrm_test.py "$@"
