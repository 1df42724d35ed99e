# Sourced by the scripts: make .venv with Metis installed (editable) and export PY.
# METIS_EXTRAS picks the optional dependencies: "dev" (default: test and lint
# tools) or "" (the runtime only, what `make demo` needs: much faster on a
# fresh machine). Re-installs only when pyproject.toml changed since the last
# install of at least those extras (a dev install also serves the demo).
set -euo pipefail
VENV=${METIS_VENV:-.venv}
EXTRAS=${METIS_EXTRAS-dev}
if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -c 'import sys, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "error: needs Python >= 3.11 with venv and pip (Debian/Ubuntu:" \
      "apt-get install -y python3 python3-venv)" >&2
    exit 1
  fi
  python3 -m venv "$VENV" || { rm -rf "$VENV"; exit 1; }
fi
PY="$VENV/bin/python"
stamp="$VENV/.metis-installed${EXTRAS:+-$EXTRAS}"
fresh=""
for s in "$stamp" "$VENV/.metis-installed-dev"; do
  if [ -f "$s" ] && [ ! pyproject.toml -nt "$s" ]; then fresh=1; fi
done
if [ -z "$fresh" ]; then
  spec="."
  [ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
  "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$PY" -m pip install -q --disable-pip-version-check -e "$spec"
  touch "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"
