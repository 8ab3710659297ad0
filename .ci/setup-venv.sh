#!/usr/bin/env bash
# Create the repository's .venv (if missing) and install the project editable with its
# test extras, but only when pyproject.toml changed since the last successful install.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
stamp="$venv/.pyproject.sha256"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "setup-venv: creating $venv with $($python --version 2>&1)"
    "$python" -m venv "$venv"
fi

# The RTP engine's C batch I/O helper (callcenter/_rtpio.c), built in place next to its source
# with the venv's interpreter flags. Never fatal: without it the engine runs its pure Python path
# (build_rtpio prints why).
build_rtpio() {
    "$venv/bin/python" "$repo/callcenter/rtpio_build.py" || echo "setup-venv: rtpio build step failed; the pure Python RTP path is used"
}

want="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$want" = "$have" ]; then
    echo "setup-venv: up to date ($venv)"
    build_rtpio
    exit 0
fi

echo "setup-venv: pyproject.toml changed; pip install -e .[test]"
"$venv/bin/python" -m pip install -q --upgrade pip
(cd "$repo" && "$venv/bin/python" -m pip install -q -e ".[test]")
# Written last, so a failed install is retried next time.
echo "$want" > "$stamp"
echo "setup-venv: installed"
build_rtpio
