#!/usr/bin/env bash
# Model files across the language boundary: the C++ writer's files (both
# formats, streamed in chunks, zip64) load in Debian's PyTorch with
# torch.load(weights_only=True) and into nn.Modules; a file torch.save wrote
# reads back in C++. Fails, never skips, if /usr/bin/python3 has no torch:
# tools/setup.sh installs python3-torch.
#
# Usage: model_file_python_test.sh <model_file_pattern> <check_model_file.py>
set -euo pipefail

readonly PATTERN=$1
readonly CHECK=$2
readonly PYTHON=/usr/bin/python3
readonly WORK=${TEST_TMPDIR:-$(mktemp -d)}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

[[ -x $PYTHON ]] || fail "$PYTHON not found; run tools/setup.sh"
"$PYTHON" -c 'import torch' ||
  fail "$PYTHON cannot import torch; run tools/setup.sh (python3-torch)"
echo "torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"

"$PATTERN" write "$WORK" || fail "model_file_pattern write exited with $?"
"$PYTHON" "$CHECK" "$WORK" || fail "check_model_file.py exited with $?"
"$PATTERN" check "$WORK/torch_saved.pt" ||
  fail "the C++ reader does not read what torch.save wrote"
echo "PASS: model files load in PyTorch and back"
