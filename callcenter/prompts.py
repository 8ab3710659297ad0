"""Prompt audio for playback: 8 kHz mono 16-bit PCM loaded once from WAV files and cached.

A city's studio recording in the override directory wins over the generated prompt of the
same name. A run of unit prompts that has a whole-phrase prompt (`ivr_flows.phrases`: 您前面
还有三位, 预计还要等待五分钟, 您要查的案件，现在的状态是已受理) plays as that phrase when
its WAV exists and none of its units was replaced by a studio recording (one voice per
sentence); otherwise the levelled units are concatenated.
"""

from __future__ import annotations

from pathlib import Path

from callcenter.media.wav import read_wav, to_8k_mono
from ivr_flows.phrases import digit_count, expand


DIGIT_GROUP = 4
DIGIT_GROUP_PAUSE = bytes(int(0.25 * 8000) * 2)  # 250 ms of 8 kHz 16-bit silence


class MissingPrompt(LookupError):
    """A flow asked for a prompt that has no WAV file."""


class PromptLibrary:
    def __init__(self, directory: Path, override_dir: Path | None = None):
        self.directory = Path(directory)
        self.override_dir = Path(override_dir) if override_dir else None
        self._cache: dict[str, bytes] = {}

    def path(self, name: str) -> Path | None:
        for d in (self.override_dir, self.directory):
            if d is not None:
                p = d / f"{name}.wav"
                if p.is_file():
                    return p
        return None

    def missing(self, names) -> list[str]:
        return sorted(n for n in set(names) if self.path(n) is None)

    def pcm(self, name: str) -> bytes:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        p = self.path(name)
        if p is None:
            raise MissingPrompt(f"prompt {name!r} has no WAV in {self.directory}")
        channels, rate, pcm = read_wav(p)
        if channels != 1 or rate != 8000:
            pcm = to_8k_mono(pcm, channels, rate)
        self._cache[name] = pcm
        return pcm

    def _studio(self, name: str) -> bool:
        return self.override_dir is not None and (self.override_dir / f"{name}.wav").is_file()

    def _phrase_usable(self, phrase: str, units: tuple[str, ...]) -> bool:
        p = self.path(phrase)
        if p is None:
            return False
        return self._studio(phrase) or not any(self._studio(u) for u in units)

    def spoken(self, names) -> list[str]:
        """The prompt names actually played for `names` (phrases substituted)."""
        return expand(list(names), self._phrase_usable)

    def sequence(self, names) -> bytes:
        """PCM of the prompts in order; a long run of digits (a case number read digit by
        digit) gets a short pause after every fourth, as people group 2026 1207 0001."""
        out: list[bytes] = []
        digits = 0
        for name in self.spoken(names):
            said = digit_count(name)  # a pair prompt (digits_27) says two
            if said:
                if digits and digits % DIGIT_GROUP == 0:
                    out.append(DIGIT_GROUP_PAUSE)
                digits += said
            else:
                digits = 0
            out.append(self.pcm(name))
        return b"".join(out)
