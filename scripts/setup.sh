#!/usr/bin/env bash
# Create .venv (if missing) and install Gleitzeit, every first-party plugin and the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# pip's and setuptools' chatter (an editable-install warning per package) goes to a log that
# is shown only when the install fails.
log=.venv/setup.log
quiet_pip() {
  if ! .venv/bin/python -m pip install --disable-pip-version-check -q "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "[setup] pip install failed (full output above, also in $log)" >&2
    exit 1
  fi
}
quiet_pip --upgrade pip
packages=(-e ".[speed]")  # the gateway's speedups too: the subprocess tests serve on uvloop
for dir in plugins/* contrib/* examples/*; do
  [ -f "$dir/pyproject.toml" ] && packages+=(-e "$dir")
done
# editable_mode=compat: a .pth line naming each source folder instead of setuptools' import
# hook, which only Python runs: mypy (and other static tools) find the packages from any
# folder, as `mypy --strict plugins/x/gleitzeit_x` in a plugin's own folder needs. Only these
# editable builds get the setting; requirements-dev.txt is installed by a second call.
quiet_pip --config-settings editable_mode=compat "${packages[@]}"
quiet_pip -r requirements-dev.txt
echo "[setup] installed: ${packages[*]} (pip's log: $log)" >&2
