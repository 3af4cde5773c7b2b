#!/usr/bin/env bash
# Run today's tests against the code of an earlier commit: the "failing before" half of docs/trust.md's tables.
# usage: bash tests/before_after.sh COMMIT [NODES_FILE]   (NODES_FILE: pytest node ids, one a line;
#        default tests/trust_cases.txt). Each test gets a 300 s limit (pytest-timeout), so a case that hung before
#        (the billion-laughs spec) is a failure, not a stuck run. The worktree is removed afterwards.
set -euo pipefail
commit=${1:?usage: bash tests/before_after.sh COMMIT [NODES_FILE]}
nodes=${2:-tests/trust_cases.txt}
root=$(git rev-parse --show-toplevel)
python=${PYTHON:-$root/.venv/bin/python}
"$python" -c "import pytest_timeout" 2>/dev/null || { echo "needs pytest-timeout: $python -m pip install pytest-timeout" >&2; exit 2; }
tree=$(mktemp -d)/before
git -C "$root" worktree add -q --detach "$tree" "$commit"
trap 'git -C "$root" worktree remove --force "$tree"' EXIT
cp "$root"/tests/*.py "$tree"/tests/
cd "$tree"
PYTHONPATH="$tree/src" "$python" -m pytest -q -p no:cacheprovider --timeout 300 -rA $(grep -v '^#' "$root/$nodes") \
  | grep -E '^(PASSED|FAILED|ERROR) |passed|failed' || true
