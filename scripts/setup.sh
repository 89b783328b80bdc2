#!/usr/bin/env bash
# Create .venv (if missing) and install Gleitzeit, every first-party plugin and the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
packages=(-e .)
for dir in plugins/* contrib/* examples/custom-strategy; do
  [ -f "$dir/pyproject.toml" ] && packages+=(-e "$dir")
done
.venv/bin/python -m pip install -q "${packages[@]}" -r requirements-dev.txt
echo "[setup] installed: ${packages[*]}" >&2
