"""Whole-phrase prompts for dynamic values, so they sound spoken rather than spliced.

The IVR engine says values as sequences of unit prompts (`queue_ahead num_3 queue_people`,
`case_status_is status_accepted`). For every value a phrase can take in practice — queue
positions 1–QUEUE_POSITION_MAX, waits of 1–WAIT_MINUTES_MAX minutes, every case status —
the prompt build also synthesises the whole sentence as one prompt, and playback swaps a
run of unit names for that phrase when its WAV exists (`expand`). Anything outside these
ranges (a 45-minute wait) stays a concatenation of levelled units. Numbers read digit by
digit (a case number) play as two-digit prompts (`digits_27` = 二七, all 100 pairs), which
Whisper base understands through the telephone channel far better than single digits
spliced together (bench/README.md, IVR voice intelligibility). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from ivr_flows.engine import say_prompts
from ivr_flows.loader import CASE_STATUSES

__all__ = ["QUEUE_POSITION_MAX", "WAIT_MINUTES_MAX", "PHRASES", "phrase_text", "expand", "digit_count"]

QUEUE_POSITION_MAX = 20
WAIT_MINUTES_MAX = 30


def _table() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for n in range(1, QUEUE_POSITION_MAX + 1):
        table[f"queue_ahead_{n}"] = ("queue_ahead", *say_prompts("number", n), "queue_people")
    for n in range(1, WAIT_MINUTES_MAX + 1):
        table[f"queue_eta_{n}"] = ("queue_eta", *say_prompts("number", n), "unit_minute")
    for status in CASE_STATUSES:
        table[f"case_status_is_{status}"] = ("case_status_is", f"status_{status}")
    for a in range(10):
        for b in range(10):
            table[f"digits_{a}{b}"] = (f"digit_{a}", f"digit_{b}")
    return table


def digit_count(name: str) -> int:
    """How many digits a played prompt says: 1 for `digit_N`, 2 for a pair `digits_NN`."""
    if name.startswith("digit_"):
        return 1
    if name.startswith("digits_"):
        return 2
    return 0


#: Phrase prompt name → the unit prompt names it replaces.
PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(_table())


def phrase_text(name: str, unit_text: Mapping[str, str]) -> str:
    """The sentence to synthesise for a phrase, from its units' manifest texts.

    A count of exactly two is 两 in speech (您前面还有两位, 等待两分钟), not 二.
    """
    parts = PHRASES[name]
    numbers = [p for p in parts if p.startswith("num_")]
    if numbers == ["num_2"]:
        return "".join("两" if p == "num_2" else unit_text[p] for p in parts)
    return "".join(unit_text[p] for p in parts)


# Longest phrases first, indexed by their first unit: a greedy left-to-right match.
_BY_FIRST: dict[str, list[tuple[tuple[str, ...], str]]] = {}
for _name, _parts in sorted(PHRASES.items(), key=lambda kv: -len(kv[1])):
    _BY_FIRST.setdefault(_parts[0], []).append((_parts, _name))


def expand(names: Sequence[str], usable: Callable[[str, tuple[str, ...]], bool]) -> list[str]:
    """Replace each run of unit names that forms a phrase by the phrase's name, when
    `usable(phrase, units)` says its audio can stand in for them (built, same voice)."""
    out: list[str] = []
    i = 0
    names = list(names)
    while i < len(names):
        for parts, phrase in _BY_FIRST.get(names[i], ()):
            if tuple(names[i:i + len(parts)]) == parts and usable(phrase, parts):
                out.append(phrase)
                i += len(parts)
                break
        else:
            out.append(names[i])
            i += 1
    return out
