"""Understanding a report: from a transcript or an agent's typed text to a case pre-fill.

Owns the offline, deterministic extraction of (1) a suggested GB/T 47678.5 matter category
with confidence and the next best two, (2) the places named, matched against the gazetteer
and the area list, (3) phone numbers and other numbers, including digits spoken as Chinese
numerals (一三八… → 138…, 幺 = 1, 两 = 2), and (4) urgency words. Keyword lexicons live in
``extraction_data/``; the category names themselves come from the category directory, so
a city's local codes are suggested without editing the lexicon.

Matter classes 01–05 are problems with a component and reuse its code; for those the
suggestion also names the component (``component`` kind, same code).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import yaml

from case_core.domain.categories import Category, CategoryDirectory
from case_core.domain.classifier import CategoryModel
from case_core.domain.extraction_numbers import find_phones, normalize_numerals, parse_chinese_number
from case_core.domain.reference import Area, Gazetteer

__all__ = [
    "Lexicon", "CategoryGuess", "PlaceGuess", "Urgency", "Extraction", "Extractor",
    "load_lexicon", "normalize_numerals", "find_phones", "parse_chinese_number",
    "LEXICON_DIR", "UNCERTAIN_LABEL",
]

LEXICON_DIR = Path(__file__).with_name("extraction_data")

# Component-problem classes (matter codes equal to component codes).
_COMPONENT_CLASSES = ("01", "02", "03", "04", "05")


# ------------------------------------------------------------------------ lexicon
@dataclass(frozen=True)
class Lexicon:
    """Keyword tables; ``keywords`` maps a 5-digit matter code to its keyword patterns."""

    keywords: Mapping[str, tuple[str, ...]]
    component_codes: frozenset[str]
    anomaly: tuple[str, ...]
    urgent: tuple[str, ...]
    high: tuple[str, ...]
    place_suffixes: tuple[tuple[str, str], ...]  # (suffix, kind), longest first
    stop_chars: str
    not_names: frozenset[str]


def _read_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def _words(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(w, str) and w for w in value):
        raise ValueError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def load_lexicon(directory: str | Path = LEXICON_DIR) -> Lexicon:
    """Read ``categories.yaml``, ``urgency.yaml`` and ``places.yaml``; ValueError names
    the file and key of a malformed entry."""
    directory = Path(directory)
    cats = _read_yaml(directory / "categories.yaml")
    keywords: dict[str, tuple[str, ...]] = {}
    components: set[str] = set()
    for section in ("components", "matters"):
        for code, words in (cats.get(section) or {}).items():
            code = str(code)
            if not re.fullmatch(r"\d{5}", code):
                raise ValueError(f"categories.yaml {section}: code {code!r} must be 5 digits")
            keywords[code] = keywords.get(code, ()) + _words(words, f"categories.yaml {section}.{code}")
            if section == "components":
                components.add(code)
    urgency = _read_yaml(directory / "urgency.yaml")
    places = _read_yaml(directory / "places.yaml")
    suffixes = [(s, kind) for kind, words in (places.get("suffixes") or {}).items()
                for s in _words(words, f"places.yaml suffixes.{kind}")]
    suffixes.sort(key=lambda sk: len(sk[0]), reverse=True)
    return Lexicon(
        keywords=keywords,
        component_codes=frozenset(components),
        anomaly=_words(cats.get("anomaly"), "categories.yaml anomaly"),
        urgent=_words(urgency.get("urgent"), "urgency.yaml urgent"),
        high=_words(urgency.get("high"), "urgency.yaml high"),
        place_suffixes=tuple(suffixes),
        stop_chars=str(places.get("stop_chars") or ""),
        not_names=frozenset(_words(places.get("not_names"), "places.yaml not_names")),
    )


# ------------------------------------------------------------------------ results
@dataclass(frozen=True)
class CategoryGuess:
    """One suggested category; ``component_*`` name the component for classes 01–05."""

    kind: str
    code: str
    name: str
    class_name: str
    score: float
    confidence: float
    matched: tuple[str, ...]
    component_code: str | None = None
    component_name: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.code}"


@dataclass(frozen=True)
class PlaceGuess:
    """A place named in the text: from the gazetteer (road/landmark…), the area list
    (community/street), or only recognised by its suffix (``source='text'``, no grid).

    A crossing (解放路和人民路路口) is one place of kind ``junction`` whose ``roads`` are
    both roads (each also listed as a place of its own); ``direction`` is a side said
    right after the name (东门大桥南侧 → 南侧), ``house_number`` a number after a road
    (长江路12号 → 12号)."""

    name: str
    kind: str
    source: str
    grid_id: str | None = None
    area_code: str | None = None
    roads: tuple[str, ...] = ()
    direction: str | None = None
    house_number: str | None = None


@dataclass(frozen=True)
class Urgency:
    """``level`` is urgent, high or normal; urgent suggests case type 突发 (urgent)."""

    level: str
    words: tuple[str, ...]

    @property
    def case_type(self) -> str:
        return "urgent" if self.level == "urgent" else "normal"


@dataclass(frozen=True)
class Extraction:
    text: str
    normalized: str
    category: CategoryGuess | None
    candidates: tuple[CategoryGuess, ...]
    places: tuple[PlaceGuess, ...]
    grid_id: str | None
    address: str | None
    phones: tuple[str, ...]
    numbers: tuple[str, ...]
    urgency: Urgency
    # confident: ``category`` is the suggestion; uncertain: the model's best guess was
    # below its threshold, ``category`` is None and the candidates are only offered (不确定);
    # none: nothing in the text points to a category.
    category_status: str = "none"

    def to_dict(self) -> dict:
        """JSON-ready, with category keys (``matter:06010``) spelled out and
        ``category_label`` (the name, 不确定 or null)."""
        data = asdict(self)
        data["category_label"] = (self.category.name if self.category else
                                  UNCERTAIN_LABEL if self.category_status == "uncertain" else None)
        for guess, raw in zip((self.category, *self.candidates),
                              (data["category"], *data["candidates"])):
            if guess is not None and raw is not None:
                raw["key"] = guess.key
        data["urgency"]["case_type"] = self.urgency.case_type
        return data


# ------------------------------------------------------------------------ extractor
UNCERTAIN_LABEL = "不确定"
_ROAD_END = ("路", "街", "道", "巷", "弄", "胡同")
_JOINERS = "和与跟同及、"
_CROSSING = re.compile(r"的?(十字路口|丁字路口|交叉路口|交叉口|交汇处|交界处|路口)")
_DIRECTION = re.compile(
    r"(?:的)?(东南角|东北角|西南角|西北角|东南侧|东北侧|西南侧|西北侧|斜对面|对面|旁边|附近|门口|"
    r"[东南西北](?:侧|边|面|门|头|口|出口)|后面|背后|出口|入口|里面|外面|下面|底下|上面)")
_HOUSE_NUMBER = re.compile(r"\d+(?:-\d+)?(?:号(?:院|楼)?|弄|栋|幢)")
_BRACKETS = re.compile(r"[（(][^）)]*[）)]")
_SPACES = re.compile(r"\s+")
_NEGATORS = ("没", "无", "未")
# 路灯, 路面, 路边…: the road suffix is part of another word.
_NOT_AFTER_ROAD = set("灯面边牙旁沿基况")


def _name_keywords(name: str) -> list[str]:
    base = _BRACKETS.sub("", name)
    for suffix in ("异常", "问题", "乱象"):
        if base.endswith(suffix) and len(base) > len(suffix) + 1:
            base = base[: -len(suffix)]
    return [w for w in re.split(r"[、，,/]", base) if len(w) >= 2]


class Extractor:
    """Extraction against one category directory, gazetteer and area list."""

    def __init__(self, categories: CategoryDirectory, gazetteer: Gazetteer | None = None,
                 areas: Iterable[Area] = (), lexicon: Lexicon | None = None,
                 top_n: int = 3, model: CategoryModel | None = None) -> None:
        self.lexicon = lexicon or load_lexicon()
        self.model = model
        self._unseen_rules: list = []  # rules of matter codes the model has no label for
        self._matters: dict[str, tuple[Category, Category | None]] = {}
        self.gazetteer = gazetteer
        self.areas = tuple(a for a in areas if a.level in ("community", "street"))
        self.top_n = top_n
        components = {c.code: c for c in categories if c.kind == "component"}
        self._rules: list[tuple[Category, Category | None, tuple[str, ...], bool]] = []
        for cat in categories:
            if cat.kind != "matter":
                continue
            is_component_problem = cat.class_code in _COMPONENT_CLASSES
            component = components.get(cat.code) if is_component_problem else None
            words = list(self.lexicon.keywords.get(cat.code, ()))
            names = _name_keywords(component.name if component else cat.name)
            words += [w for w in names if w not in words]
            self._rules.append((cat, component, tuple(words), is_component_problem))
            self._matters[cat.code] = (cat, component)
        if model is not None:
            labels = set(model.labels)
            self._unseen_rules = [r for r in self._rules if r[0].code not in labels]

    # -- category
    def _score(self, text: str, rules=None) -> list[tuple[float, Category, Category | None, tuple[str, ...]]]:
        has_anomaly = any(w in text for w in self.lexicon.anomaly)
        scored = []
        for cat, component, words, is_component_problem in (self._rules if rules is None else rules):
            matched = tuple(w for w in words if all(p in text for p in w.split("&")))
            if not matched:
                continue
            score = float(sum(len(w.replace("&", "")) for w in matched))
            if is_component_problem:
                # Naming an object is weak evidence of a problem with it without a
                # word like 坏/不亮/缺.
                score *= 1.3 if has_anomaly else 0.6
            scored.append((score, cat, component, matched))
        scored.sort(key=lambda s: (-s[0], s[1].code))
        return scored

    def _model_guesses(self, text: str) -> tuple[tuple[CategoryGuess, ...], bool]:
        """(top categories, confident?) from the trained model, restricted to the matter
        codes of this directory."""
        ranked = self.model.rank(text, self.top_n, allowed=self._matters)
        guesses = []
        for code, p in ranked:
            cat, component = self._matters[code]
            guesses.append(CategoryGuess(
                kind="matter", code=cat.code, name=cat.name, class_name=cat.class_name,
                score=round(p, 4), confidence=round(p, 3), matched=(),
                component_code=component.code if component else None,
                component_name=component.name if component else None))
        confident = bool(ranked) and self.model.is_confident(ranked[0][1])
        # A code the model never saw (a city's new local code) can only be found by its
        # name: the lexicon's match on it is offered as the first candidate, 不确定.
        unseen = self._lexicon_guesses(text, self._unseen_rules) if self._unseen_rules else []
        if unseen:
            guesses = [unseen[0]] + [g for g in guesses if g.code != unseen[0].code]
            return tuple(guesses[: self.top_n]), False
        return tuple(guesses), confident

    def _lexicon_guesses(self, text: str, rules) -> list[CategoryGuess]:
        return [CategoryGuess(
            kind="matter", code=cat.code, name=cat.name, class_name=cat.class_name,
            score=round(score, 2), confidence=0.0, matched=matched,
            component_code=component.code if component else None,
            component_name=component.name if component else None)
            for score, cat, component, matched in self._score(text, rules)[: self.top_n]]

    def suggest_categories(self, text: str) -> tuple[CategoryGuess, ...]:
        """Top categories for ``text`` (already normalised), best first: from the trained
        model when there is one, else from the keyword lexicon."""
        if self.model is not None:
            return self._model_guesses(text)[0]
        scored = self._score(text)[: self.top_n]
        total = sum(s[0] for s in scored)
        guesses = []
        for score, cat, component, matched in scored:
            # Share of the evidence, damped when the evidence itself is thin.
            confidence = (score / total) * min(1.0, score / 6.0) if total else 0.0
            guesses.append(CategoryGuess(
                kind="matter", code=cat.code, name=cat.name, class_name=cat.class_name,
                score=round(score, 2), confidence=round(confidence, 3), matched=matched,
                component_code=component.code if component else None,
                component_name=component.name if component else None))
        return tuple(guesses)

    # -- places
    def find_places(self, text: str) -> tuple[PlaceGuess, ...]:
        found: list[PlaceGuess] = []
        masked = text
        # Areas first: 梅园社区 must not be read as the gazetteer alias 梅园 plus 社区.
        for area in sorted(self.areas, key=lambda a: len(a.name), reverse=True):
            if area.name in masked:
                found.append(PlaceGuess(area.name, area.level, "area", None, area.code))
                masked = masked.replace(area.name, "\0" * len(area.name))
        if self.gazetteer is not None:
            for place in self.gazetteer.lookup(masked):
                found.append(PlaceGuess(place.name, place.kind, "gazetteer", place.grid_id))
                for n in (place.name, *place.aliases):
                    masked = masked.replace(n, "\0" * len(n))
        # Gazetteer places before areas: they carry a grid cell.
        found.sort(key=lambda p: p.source != "gazetteer")
        found += self._mentions(masked)
        surfaces = {}
        if self.gazetteer is not None:
            for place in self.gazetteer.places:
                said = next((n for n in (place.name, *place.aliases) if n and n in text), None)
                if said:
                    surfaces.setdefault(place.name, said)
        found = [self._with_detail(text, p, surfaces.get(p.name, p.name)) for p in found]
        return tuple(self._junctions(text, found) + found)

    @staticmethod
    def _with_detail(text: str, place: PlaceGuess, said: str) -> PlaceGuess:
        """The house number or side said right after the place's name (as ``said``)."""
        i = text.find(said)
        if i < 0:
            return place
        rest = text[i + len(said):]
        number = _HOUSE_NUMBER.match(rest) if place.kind in ("road",) else None
        if number:
            rest = rest[number.end():]
        side = _DIRECTION.match(rest)
        return PlaceGuess(place.name, place.kind, place.source, place.grid_id, place.area_code,
                          place.roads, side.group(1) if side else None,
                          number.group() if number else None)

    @staticmethod
    def _junctions(text: str, places: Sequence[PlaceGuess]) -> list[PlaceGuess]:
        """Two roads joined by 和/与/跟… and followed by 路口/交叉口…: one junction."""
        roads = [p for p in places if p.kind == "road" or p.name.endswith(_ROAD_END)]
        out: list[PlaceGuess] = []
        for a in roads:
            i = text.find(a.name)
            if i < 0:
                continue
            after = text[i + len(a.name):]
            if not after or after[0] not in _JOINERS:
                continue
            for b in roads:
                if b is a or not after[1:].startswith(b.name):
                    continue
                crossing = _CROSSING.match(after[1 + len(b.name):])
                if crossing:
                    name = a.name + after[0] + b.name + crossing.group(1)
                    tail = after[1 + len(b.name) + crossing.end():]
                    side = _DIRECTION.match(tail)
                    out.append(PlaceGuess(name, "junction", a.source if a.source == b.source else "text",
                                          a.grid_id or b.grid_id, None, (a.name, b.name),
                                          side.group(1) if side else None))
        return out

    def _mentions(self, text: str) -> list[PlaceGuess]:
        """Names ending in a place suffix, read left to right; each found name is masked
        so a later suffix cannot reach back into it."""
        lex = self.lexicon
        chars = list(text)
        out: list[PlaceGuess] = []
        i = 0
        while i < len(chars):
            for suffix, kind in lex.place_suffixes:
                end = i + len(suffix)
                if "".join(chars[i:end]) != suffix:
                    continue
                if kind == "road" and text[end:end + 1] in _NOT_AFTER_ROAD:
                    continue
                j = i
                while (j > 0 and i - j < 6 and chars[j - 1] not in lex.stop_chars
                       and chars[j - 1] != "\0" and not chars[j - 1].isdigit()
                       and not (chars[j - 1] in _JOINERS and j >= 2 and
                                ("".join(chars[max(0, j - 3):j - 1]).endswith(_ROAD_END)
                                 or chars[j - 2] == "\0"))):
                    j -= 1
                name = "".join(chars[j:end])
                if i - j >= 2 and name not in lex.not_names:
                    out.append(PlaceGuess(name, kind, "text"))
                    chars[j:end] = ["\0"] * (end - j)
                    i = end - 1
                    break
            i += 1
        return out

    # -- urgency
    def find_urgency(self, text: str) -> Urgency:
        def hits(words: Sequence[str]) -> list[str]:
            out = []
            for w in words:
                start = 0
                while (i := text.find(w, start)) >= 0:
                    start = i + 1
                    before = text[max(0, i - 3):i]
                    if any(n in before for n in _NEGATORS) or text[i - 1:i] == "不":
                        continue
                    if not any(w in o for o in out):
                        out.append(w)
                    break
            return out

        urgent, high = hits(self.lexicon.urgent), hits(self.lexicon.high)
        level = "urgent" if urgent else "high" if high else "normal"
        return Urgency(level, tuple(urgent + high))

    # -- all together
    def extract(self, text: str) -> Extraction:
        normalized = _SPACES.sub("", normalize_numerals(text))
        if self.model is not None:
            candidates, confident = self._model_guesses(normalized)
        else:
            candidates = self.suggest_categories(normalized)
            confident = bool(candidates)
        status = "confident" if confident else "uncertain" if candidates else "none"
        places = self.find_places(normalized)
        phones = tuple(find_phones(normalized))
        numbers = tuple(n for n in re.findall(r"\d+", normalized)
                        if not any(n in p.replace("-", "") for p in phones))
        grid = next((p.grid_id for p in places if p.grid_id), None)
        return Extraction(
            text=text, normalized=normalized,
            category=candidates[0] if confident else None, candidates=candidates,
            places=places, grid_id=grid, address=self._address(normalized, places),
            phones=phones, numbers=numbers, urgency=self.find_urgency(normalized),
            category_status=status)

    @staticmethod
    def _address(text: str, places: Sequence[PlaceGuess]) -> str | None:
        """A junction's name, else the first place with a house number or crossing right
        after it, if any."""
        if not places:
            return None
        junction = next((p for p in places if p.kind == "junction"), None)
        if junction is not None:
            return junction.name
        first = min(places, key=lambda p: (text.find(p.name) if p.name in text else len(text)))
        i = text.find(first.name)
        if i < 0:
            return first.name
        tail = re.match(r"(\d+号(?:楼|院)?|与\w{2,6}?(?:路|街)交叉口|\w{0,2}交叉口|\w{0,2}路口)?",
                        text[i + len(first.name):])
        return first.name + (tail.group(1) or "" if tail else "")
