"""Prompt intelligibility: every IVR prompt through a telephone channel, transcribed by the
product's own Whisper, scored by character error rate. Prints one JSON object.

    .venv/bin/python bench/prompt_intelligibility.py [--engines neural,espeak] [--threads N]

For each engine (the neural voice, and espeak-ng as the baseline, built in the same run
with `build_prompts(force=True)`):

- `sentences`: every spoken prompt of the manifest that is played on its own (not a digit,
  number, unit or status word, nor a lead-in that is only ever heard with a value after it:
  queue_ahead, queue_eta, case_status_is, case_number_is — those are measured inside the
  dynamic phrases);
- `dynamic`: a sample of dynamic phrases as the call plays them (`PromptLibrary.sequence`,
  so whole-phrase prompts where they exist, levelled units otherwise): queue positions,
  waits, every case status, case numbers read digit by digit.

Channel: 300–3400 Hz band-pass and a G.711 A-law round trip (`telephone_channel`); each
clip has 0.5 s of silence before and after, as prompts are heard within a call (Whisper
mishears the first syllable of audio that starts at sample 0).
Recogniser: Whisper base int8 (callcenter/stt/whisper_stt.py, the product's decoding).
CER: spaces/punctuation removed, traditional → simplified, and spoken numbers written as
digits on both sides (十五 = 15, 幺二三幺九 = 12319, 两 = 2), so a correct "15分钟" is not an
error. Pooled CER = all edits ÷ all reference characters; per prompt listed too. `ser` is
the same over toneless pinyin syllables: what was heard, not which homophone Whisper wrote
(反映/反应, 您/你 count as errors in CER but not in SER).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callcenter.media.wav import WavWriter  # noqa: E402
from callcenter.prompts import PromptLibrary  # noqa: E402
from callcenter.stt.quality import (  # noqa: E402
    edit_distance, normalize_for_cer, spoken_numbers_to_digits, telephone_channel)
from ivr_flows.engine import say_prompts  # noqa: E402
from ivr_flows.loader import CASE_STATUSES  # noqa: E402
from ivr_flows.prompts_build import build_prompts, default_manifest_path, load_manifest  # noqa: E402

_UNIT = re.compile(r"(digit|num|unit|status)_")
_PAD = bytes(8000)  # 0.5 s of 8 kHz 16-bit silence
LEAD_INS = frozenset({"queue_ahead", "queue_people", "queue_eta", "case_status_is", "case_number_is"})


def sentence_prompts(specs) -> dict[str, str]:
    return {n: s.text for n, s in specs.items()
            if s.text and not _UNIT.match(n) and n not in LEAD_INS}


def dynamic_sample(specs, seed: int = 12319) -> list[tuple[str, list[str], str]]:
    """(label, unit prompt names as the IVR emits them, what a listener should hear)."""
    text = {n: s.text for n, s in specs.items() if s.text}
    rng = random.Random(seed)
    out = []
    for n in (1, 2, 3, 7, 12, 20, 26):
        units = ["queue_ahead", *say_prompts("number", n), "queue_people"]
        out.append((f"queue_ahead:{n}", units, f"{text['queue_ahead']}{n}{text['queue_people']}"))
    for n in (1, 2, 5, 10, 15, 30, 45):
        units = ["queue_eta", *say_prompts("number", n), "unit_minute"]
        out.append((f"queue_eta:{n}", units, f"{text['queue_eta']}{n}{text['unit_minute']}"))
    for status in CASE_STATUSES:
        out.append((f"case_status:{status}", ["case_status_is", f"status_{status}"],
                    text["case_status_is"] + text[f"status_{status}"]))
    for _ in range(5):
        number = f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(1, 40):04d}"
        out.append((f"case_number:{number}", ["case_number_is", *say_prompts("digits", number)],
                    text["case_number_is"] + number))
    return out


def score(reference: str, hypothesis: str) -> tuple[int, int]:
    ref = spoken_numbers_to_digits(normalize_for_cer(reference))
    hyp = spoken_numbers_to_digits(normalize_for_cer(hypothesis))
    return edit_distance(ref, hyp), len(ref)


def _syllables(text: str) -> list[str]:
    from pypinyin import Style, lazy_pinyin

    from callcenter.stt.quality import _hanzi_number

    # Digits back to hanzi so 15 and 十五 are the same syllables; 幺 reads as 一.
    text = re.sub(r"\d", lambda m: "零一二三四五六七八九"[int(m.group())], normalize_for_cer(text))
    text = re.sub("[零一二三四五六七八九幺两十百千万]+", lambda m: "".join(
        "零一二三四五六七八九"[int(d)] for d in _hanzi_number(m.group())), text)
    return lazy_pinyin(text, style=Style.NORMAL)


def syllable_score(reference: str, hypothesis: str) -> tuple[int, int]:
    ref, hyp = _syllables(reference), _syllables(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def measure(recognizer, library: PromptLibrary, items, tmp: Path) -> dict:
    errors = chars = s_errors = syllables = 0
    rows = []
    for label, names, reference in items:
        pcm = library.sequence(names)
        path = tmp / "clip.wav"
        with WavWriter(path, channels=1, sample_rate=8000) as w:
            w.write(telephone_channel(_PAD + pcm + _PAD, 1, 8000))
        hyp = recognizer.transcribe(path).text
        e, n = score(reference, hyp)
        se, sn = syllable_score(reference, hyp)
        errors += e
        chars += n
        s_errors += se
        syllables += sn
        rows.append({"prompt": label, "played": " ".join(library.spoken(names)) if len(names) > 1
                     else names[0], "ref": reference, "hyp": hyp, "cer": round(e / n, 3), "ser": round(se / sn, 3),
                     "seconds": round(len(pcm) / 16000, 2)})
    return {"items": len(rows), "chars": chars, "cer": round(errors / chars, 4),
            "ser": round(s_errors / syllables, 4), "per_prompt": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="neural,espeak")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for Whisper")
    parser.add_argument("--models-dir", default=str(REPO / "var" / "models"))
    args = parser.parse_args()

    from callcenter.stt.whisper_stt import WhisperRecognizer

    manifest = default_manifest_path()
    specs = load_manifest(manifest)
    sentences = [(n, [n], t) for n, t in sentence_prompts(specs).items()]
    dynamic = dynamic_sample(specs)
    result: dict = {"cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                    "channel": "300-3400 Hz band-pass, G.711 A-law, 8 kHz",
                    "recogniser": "faster-whisper base int8, product decoding (whisper_stt.py)",
                    "cer_normalisation": "spaces/punctuation removed, t2s, spoken numbers as digits"}
    recognizer = WhisperRecognizer(cpu_threads=args.threads,
                                   cache_dir=Path(args.models_dir) / "whisper-base")
    with tempfile.TemporaryDirectory(prefix="intelligibility-") as tmp:
        for engine in args.engines.split(","):
            out = Path(tmp) / engine
            notices: list[str] = []
            started = time.perf_counter()
            built = build_prompts(manifest, out, engine=engine, force=True, notice=notices.append)
            build_s = time.perf_counter() - started
            used = (out / ".engine").read_text().strip()
            library = PromptLibrary(out)
            result[engine] = {
                "engine_used": used, "notices": notices, "prompts_built": len(built),
                "build_s": round(build_s, 1),
                "sentences": measure(recognizer, library, sentences, Path(tmp)),
                "dynamic": measure(recognizer, library, dynamic, Path(tmp)),
            }
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
