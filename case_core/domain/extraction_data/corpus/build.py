"""Build the labelled complaint corpus for category suggestion (deterministic, fixed seed).

    python -m case_core.domain.extraction_data.corpus.build [--seed 12319]

writes ``train.csv``, ``validation.csv`` and ``heldout.csv`` (columns ``code,text``) next to
this file from the wording in ``components.yaml``, ``matters.yaml`` and ``phrasing.yaml``
(plus the training-only files of `MATTER_FILES` and `COMPONENT_FILE`).
Every matter code of the national table plus the demo district's local codes has texts in
every split. Training and validation share one set of sentence frames, problem phrases,
openers, closers, fillers, homophone errors and place names; the held-out split is written
only from the separate ``heldout`` pools (and from object names and matter phrases reserved
for it), so its score says how the model does on wording it never saw. Never tune on it.

Texts imitate what reaches the desk: typed notes and transcripts (no punctuation, spoken
digits, word spaces as vosk prints them, homophones), with places (roads, junctions,
landmarks with a direction, house numbers) and phone numbers mixed in.
"""
from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SPLITS = {"train": 36, "validation": 6, "heldout": 8}
NONE = "none"  # the label of talk that names no problem (training and validation only)
CHATTER = {"train": 120, "validation": 30}
DEFAULT_SEED = 12319
HELDOUT_MARK = "||"

# Place vocabularies: training/validation and held-out use different names.
PLACES = {
    "train": {
        "roads": ["人民路", "解放路", "中山北路", "建设路", "长江路", "和平街", "新华路", "胜利路",
                  "文化路", "黄河路", "东风路", "青年大街", "迎宾大道", "北京西路", "太平巷", "中山东路"],
        "areas": ["幸福小区", "阳光花园", "梅园新村", "锦绣家园", "金色港湾小区", "翠竹苑", "红旗新村"],
        "landmarks": ["新街口广场", "人民公园", "市第一医院", "实验小学", "火车站", "万达广场", "东门大桥", "梅园小学"],
    },
    "heldout": {
        "roads": ["龙蟠路", "汉中路", "珠江路", "虎踞路", "白下路", "秦淮街", "凤凰西街", "玄武大道",
                  "草场门大街", "瑞金路", "广州路", "石鼓巷"],
        "areas": ["月牙湖花园", "银城东苑", "兰园小区", "御道家园", "南湖新村", "莫愁新寓"],
        "landmarks": ["鼓楼广场", "玄武湖公园", "省人民医院", "莫愁湖公园", "汉中门大桥", "夫子庙", "第三中学"],
    },
}
DIRECTIONS = {"train": ["东侧", "西侧", "南侧", "北侧", "门口", "对面", "旁边", "东门", "南门", "附近"],
              "heldout": ["西北角", "东南边", "背后", "斜对面", "北门外", "出口那里"]}
# Training-only wording added to matters.yaml / components.yaml + phrasing.yaml, by round.
MATTER_FILES = ("matters_extra.yaml", "matters_spoken.yaml", "matters_more.yaml", "matters_colloquial.yaml")
COMPONENT_FILE = "components_more.yaml"
ROUND4 = ("matters_colloquial.yaml", COMPONENT_FILE)
DEFAULT_SKIP: tuple[str, ...] = ()
SPOKEN = {"train": "零一二三四五六七八九", "heldout": "洞幺两三四五六拐八勾"}


def _tidy(text: str) -> str:
    """Frames joined with empty openers or closers leave doubled punctuation behind."""
    for a, b in (("，，", "，"), ("。。", "。"), ("。，", "，"), ("了了", "了"), ("，。", "。")):
        while a in text:
            text = text.replace(a, b)
    return text.strip("，")


def _load(name: str) -> dict:
    return yaml.safe_load((HERE / name).read_text(encoding="utf-8"))


def _split_list(items: list[str]) -> tuple[list[str], list[str]]:
    """(train pool, held-out pool) of a components.yaml object list: the last name of a
    list of three or more is held-out only; the held-out split may use any name."""
    if len(items) >= 3:
        return items[:-1], items
    return items, items


def _split_marked(items: list[str]) -> tuple[list[str], list[str]]:
    i = items.index(HELDOUT_MARK)
    return items[:i], items[i + 1:]


def _spoken_digits(rng: random.Random, digits: str, style: str) -> str:
    table = SPOKEN[style] if rng.random() < 0.7 else SPOKEN["train" if style == "heldout" else "heldout"]
    return "".join(table[int(d)] if d.isdigit() else d for d in digits)


def _phone(rng: random.Random, style: str) -> str:
    if rng.random() < 0.8:
        number = rng.choice("3456789") and "1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9))
        groups = [number[:3], number[3:7], number[7:]]
    else:
        area = rng.choice(["025", "021", "010", "0512"])
        local = rng.choice("2345678") + "".join(rng.choice("0123456789") for _ in range(7))
        number, groups = area + local, [area, local[:4], local[4:]]
    r = rng.random()
    if r < 0.35:
        return _spoken_digits(rng, number, style)
    if r < 0.55:
        return " ".join(groups)
    if r < 0.7:
        return "-".join(groups)
    if r < 0.8:
        return " ".join(_spoken_digits(rng, g, style) for g in groups)
    return number


def _house_number(rng: random.Random, style: str) -> str:
    n = rng.randint(1, 399)
    if rng.random() < 0.5:
        return f"{n}号"
    units = "零一二三四五六七八九"
    return "".join(units[int(d)] for d in str(n)) + "号" if style == "train" else f"{n}号院"


def _place(rng: random.Random, style: str) -> str:
    vocab = PLACES["heldout" if style == "heldout" else "train"]
    d = DIRECTIONS["heldout" if style == "heldout" else "train"]
    r = rng.random()
    if r < 0.25:
        a, b = rng.sample(vocab["roads"], 2)
        joint = rng.choice(["和", "与", "跟"])
        return a + joint + b + rng.choice(["路口", "交叉口", "十字路口", "交叉口" + rng.choice(d)])
    if r < 0.45:
        return rng.choice(vocab["roads"]) + _house_number(rng, style) + rng.choice(["", "门口", "旁边"])
    if r < 0.65:
        return rng.choice(vocab["landmarks"]) + rng.choice(d)
    if r < 0.85:
        return rng.choice(vocab["areas"]) + rng.choice(["", "门口", "里面", f"{rng.randint(1, 30)}栋楼下"])
    return rng.choice(vocab["roads"])


class Builder:
    def __init__(self, seed: int = DEFAULT_SEED, skip: tuple[str, ...] = DEFAULT_SKIP) -> None:
        """``skip``: wording files left out (`bench/classifier_cv.py` measures what they add)."""
        self.seed = seed
        self.components = _load("components.yaml")
        self.matters = _load("matters.yaml")
        self.phrasing = _load("phrasing.yaml")
        for extra_file in MATTER_FILES:
            if extra_file in skip:
                continue
            for code, extra in _load(extra_file).items():
                i = self.matters[code].index(HELDOUT_MARK)
                self.matters[code] = self.matters[code][:i] + extra + self.matters[code][i:]
        more = ({"objects": {}, "problems": {}} if COMPONENT_FILE in skip
                else _load(COMPONENT_FILE))
        # Training-only object names: the held-out split keeps drawing from components.yaml.
        self.more_objects = {code: [n for n in names if n not in self.components[code][1:]]
                             for code, names in more["objects"].items()}
        for kind, phrases in more["problems"].items():
            pool, held = self.phrasing["problems"][kind]["train"], self.phrasing["problems"][kind]["heldout"]
            # A phrase that is already held-out wording stays held-out only.
            pool += [p for p in phrases if p not in pool and p not in held]
        self.keywords = {code: self._clean_keywords(code, words)
                         for code, words in _load("keywords.yaml").items()}

    def _clean_keywords(self, code: str, words: list[str]) -> list[str]:
        """A keyword found in the code's held-out phrases but in none of its training
        phrases is dropped: the keyword list must not carry held-out wording over."""
        train, held = _split_marked(self.matters[code])
        return [w for w in words
                if not any(w in h for h in held) or any(w in t for t in train)]

    def codes(self) -> list[str]:
        return sorted(set(self.components) | set(self.matters))

    def _pool(self, name: str, style: str) -> list:
        section = self.phrasing[name]
        return section["heldout" if style == "heldout" else "train"]

    def _noise(self, rng: random.Random, text: str, style: str) -> str:
        homophones = self._pool("homophones", style)
        for word, wrong in homophones.items():
            if word in text and rng.random() < 0.25:
                text = text.replace(word, wrong, 1)
        if rng.random() < 0.35:
            filler = rng.choice(self._pool("fillers", style))
            cut = text.find("，")
            text = (filler + text) if cut < 0 else text[:cut + 1] + filler + text[cut + 1:]
        r = rng.random()
        if r < 0.3:  # a transcript: no punctuation
            text = "".join(c for c in text if c not in "，。？！、")
        elif r < 0.38:  # vosk prints word-spaced characters
            text = " ".join(c for c in text if c not in "，。？！、")
        return text

    def _text(self, rng: random.Random, code: str, style: str) -> str:
        held = style == "heldout"
        frames = self.phrasing["frames"]["heldout" if held else "train"]
        if code in self.components:
            kind, *objects = self.components[code]
            train_objs, held_objs = _split_list(objects)
            train_objs = train_objs + self.more_objects.get(code, [])
            obj = rng.choice(held_objs if held else train_objs)
            if not held and rng.random() < 0.3:
                problem = rng.choice(self.phrasing["problems"]["generic"]["train"])
            else:
                problem = rng.choice(self.phrasing["problems"][kind]["heldout" if held else "train"])
            frame = rng.choice(frames["component"])
            fields = {"o": obj, "p": problem, "s": ""}
        else:
            train_says, held_says = _split_marked(self.matters[code])
            frame = rng.choice(frames["matter"])
            say = rng.choice(held_says if held else train_says)
            keywords = self.keywords.get(code) if not held else None
            if keywords and rng.random() < 0.5:
                kw = rng.choice(keywords)
                say = rng.choice([f"{say}，{kw}", f"{say}，就是{kw}的问题", f"{kw}，{say}",
                                  f"有{kw}的情况", f"反映{kw}问题", f"{kw}"])
            fields = {"o": "", "p": "", "s": say}
        opener = rng.choice(self._pool("openers", style))
        closer = rng.choice(self._pool("closers", style)).replace("{phone}", _phone(rng, style))
        text = frame.format(place=_place(rng, style), open=opener, close=closer,
                            h_open=opener, h_close=closer, **fields)
        return self._noise(rng, _tidy(text), style)

    def build(self) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
        seen: set[str] = set()
        for split, per_code in SPLITS.items():
            style = "heldout" if split == "heldout" else "train"
            for code in self.codes():
                rng = random.Random(f"{self.seed}:{split}:{code}")
                texts: list[str] = []
                tries = 0
                while len(texts) < per_code and tries < per_code * 50:
                    tries += 1
                    text = self._text(rng, code, style)
                    if text not in seen:
                        seen.add(text)
                        texts.append(text)
                out[split] += [(code, t) for t in texts]
            if split in CHATTER:
                rng = random.Random(f"{self.seed}:{split}:{NONE}")
                texts = []
                while len(texts) < CHATTER[split]:
                    text = self._chatter(rng)
                    if text not in seen or len(seen) > 10 ** 6:
                        seen.add(text)
                        texts.append(text)
                out[split] += [(NONE, t) for t in texts]
        return out

    def _chatter(self, rng: random.Random) -> str:
        said = rng.choice(self.phrasing["chatter"])
        text = rng.choice(self.phrasing["openers"]["train"]) + said.format(
            place=_place(rng, "train"), phone=_phone(rng, "train"))
        if rng.random() < 0.3:
            text += "，" + rng.choice(self.phrasing["chatter"]).format(
                place=_place(rng, "train"), phone=_phone(rng, "train"))
        return self._noise(rng, _tidy(text), "train")


def write(rows: dict[str, list[tuple[str, str]]], directory: Path = HERE) -> None:
    for split, items in rows.items():
        with (directory / f"{split}.csv").open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["code", "text"])
            w.writerows(items)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = p.parse_args(argv)
    rows = Builder(args.seed).build()
    write(rows)
    print({split: len(items) for split, items in rows.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
