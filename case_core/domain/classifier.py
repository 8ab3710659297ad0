"""The category model: matter categories suggested from text by a linear model over
character n-grams (TF-IDF), trained from the labelled corpus (`case_core.classifier_training`).

This module owns prediction only, in plain numpy, so the server loads a trained model from
one ``.npz`` file in milliseconds and never imports the training library:

    model = CategoryModel.load(path)
    model.rank("长江路井盖丢了", k=3)   # [("01023", 0.91), ("01001", 0.03), …]

Features are the character 1–3-grams of `model_text(text)`: spoken numerals normalised,
spaces, punctuation and digit runs removed (phone numbers and house numbers say nothing
about the category), each n-gram weighted 1 + log(count) times its idf, the vector scaled
to unit length — exactly what `TfidfVectorizer(analyzer=model_ngrams, sublinear_tf=True)`
computes at training time. Scores are ``x @ weights + bias``; ``probabilities`` are their
softmax at the ``temperature`` fitted on the validation split, and a top probability under
``threshold`` (also chosen on the validation split) means 不确定.

A name-match prior is added to the scores: ``aliases`` maps words that name a category
(its own name without 异常/问题, the object names and keywords of the training corpus:
路灯, 井盖, 垃圾, 占道…) to the categories they name. Every alias found in the text that is
not part of a longer alias also found (井盖 inside 雨水井盖) adds ``prior_weight`` (fitted on
the validation split) to its categories. The n-grams learn the corpus wording; the prior
keeps a plain "路灯不亮" on 路灯 when the rest of the sentence looks like another matter's.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from case_core.domain.extraction_numbers import normalize_numerals

__all__ = ["CategoryModel", "model_text", "model_ngrams", "top_k_accuracy", "NGRAM_RANGE",
           "FORMAT_VERSION", "NONE_LABEL"]

NGRAM_RANGE = (1, 3)
# Label of talk that names no problem; its probability counts against every category.
NONE_LABEL = "none"
FORMAT_VERSION = 2
_DROP = re.compile(r"[\s\d\-—–~～·.,，。、;；:：!！?？\"'“”‘’()（）《》<>\[\]【】…]+")


# "我的电话是 138…", "联系电话：025-…": the cue of a phone number, with the number.
_PHONE_CUE = re.compile(r"(?:我的|我|联系|回我|打我|家里|我家)?(?:电话|手机|号码|座机)(?:号码)?(?:是|为)?"
                        r"[\s:：,，]*(?=[\d\s\-]{7,})")


def model_text(text: str) -> str:
    """The text the model reads: numerals normalised, phone numbers and their cue words
    (电话是…) dropped, then spaces, digits and punctuation removed (ASR output with word
    spaces reads like typed text)."""
    return _DROP.sub("", _PHONE_CUE.sub("", normalize_numerals(text or "")))


def model_ngrams(text: str) -> list[str]:
    """Character n-grams of `model_text(text)` (the analyzer used in training too)."""
    t = model_text(text)
    lo, hi = NGRAM_RANGE
    return [t[i:i + n] for n in range(lo, hi + 1) for i in range(len(t) - n + 1)]


# Feature sets a model can be trained on (the name is stored in the model file). Word
# features (jieba) and Cilin synonym groups were measured and did not help (bench/README.md).
FEATURE_SETS = {"char13": model_ngrams}


@dataclass
class CategoryModel:
    """A trained linear model over TF-IDF character n-grams. ``labels`` are matter codes."""

    labels: tuple[str, ...]
    vocabulary: Mapping[str, int]
    idf: np.ndarray            # (features,)
    weights: np.ndarray        # (features, classes), float32
    bias: np.ndarray           # (classes,)
    temperature: float = 1.0
    threshold: float = 0.0
    meta: dict = field(default_factory=dict)
    aliases: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # word → label indices
    prior_weight: float = 0.0
    feature_set: str = "char13"

    def __post_init__(self) -> None:
        self._alias_max = max((len(a) for a in self.aliases), default=0)

    def name_prior(self, text: str) -> np.ndarray:
        """(classes,) 1.0 for each category named by an alias found in ``text`` (longest
        matches only: an alias inside another alias found is ignored), else 0."""
        prior = np.zeros(len(self.labels))
        if not self.aliases:
            return prior
        t = model_text(text)
        found: list[tuple[int, int]] = []  # (start, end) of every alias occurrence
        for i in range(len(t)):
            for n in range(2, min(self._alias_max, len(t) - i) + 1):
                if t[i:i + n] in self.aliases:
                    found.append((i, i + n))
        for i, j in found:
            if not any(a <= i and j <= b and (a, b) != (i, j) for a, b in found):
                prior[list(self.aliases[t[i:j]])] = 1.0
        return prior

    # -- prediction
    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(feature indices, tf-idf values, unit length) of ``text``."""
        counts: dict[int, int] = {}
        vocab = self.vocabulary
        for g in FEATURE_SETS[self.feature_set](text):
            j = vocab.get(g)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return np.empty(0, dtype=np.int64), np.empty(0)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self.idf[idx]
        norm = math.sqrt(float(values @ values))
        return idx, values / norm if norm else values

    def scores(self, text: str) -> np.ndarray:
        idx, values = self.features(text)
        linear = values @ self.weights[idx] + self.bias
        if self.prior_weight:
            linear = linear + self.prior_weight * self.name_prior(text)
        return linear

    def probabilities(self, text: str) -> np.ndarray:
        s = self.scores(text) * self.temperature
        s = np.exp(s - s.max())
        return s / s.sum()

    def rank(self, text: str, k: int = 3, allowed: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """The ``k`` most probable categories with their probability, best first. Labels
        not in ``allowed`` (e.g. a local code this city does not use) are left out and the
        rest renormalised — together with `NONE_LABEL`, whose share is never returned but
        keeps chatter from looking like a confident category."""
        p = self.probabilities(text)
        allow = set(allowed) if allowed is not None else set(self.labels)
        keep = np.array([lab in allow and lab != NONE_LABEL for lab in self.labels])
        none = np.array([lab == NONE_LABEL for lab in self.labels])
        total = p[keep].sum() + p[none].sum()
        if total <= 0 or not keep.any():
            return []
        p = np.where(keep, p, 0.0) / total
        order = np.argsort(-p, kind="stable")[:k]
        return [(self.labels[i], float(p[i])) for i in order if p[i] > 0]

    def is_confident(self, probability: float) -> bool:
        return probability >= self.threshold

    # -- storage
    def save(self, path: str | Path) -> None:
        """One compressed ``.npz`` (no pickle): arrays plus a JSON header."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        words = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        header = {"format": FORMAT_VERSION, "labels": list(self.labels), "temperature": self.temperature,
                  "threshold": self.threshold, "ngram_range": list(NGRAM_RANGE), "meta": self.meta,
                  "prior_weight": self.prior_weight, "feature_set": self.feature_set,
                  "aliases": {a: list(ix) for a, ix in sorted(self.aliases.items())}}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, header=np.array(json.dumps(header, ensure_ascii=False)),
                            vocabulary=np.array("\n".join(words)), idf=self.idf.astype(np.float64),
                            weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float64))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "CategoryModel":
        """Read a model written by `save`; ValueError names the file when it is not one."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                words = str(data["vocabulary"]).split("\n")
                idf, weights, bias = data["idf"], data["weights"], data["bias"]
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a category model ({exc})") from None
        if header.get("format") != FORMAT_VERSION or tuple(header.get("ngram_range", ())) != NGRAM_RANGE:
            raise ValueError(f"{path}: category model format {header.get('format')} is not {FORMAT_VERSION}")
        if header.get("feature_set", "char13") not in FEATURE_SETS:
            raise ValueError(f"{path}: unknown feature set {header.get('feature_set')!r}")
        if weights.shape != (len(words), len(header["labels"])):
            raise ValueError(f"{path}: category model arrays do not match its header")
        return cls(labels=tuple(header["labels"]), vocabulary={w: i for i, w in enumerate(words)},
                   idf=idf, weights=weights, bias=bias, temperature=float(header["temperature"]),
                   threshold=float(header["threshold"]), meta=header.get("meta") or {},
                   aliases={a: tuple(ix) for a, ix in header.get("aliases", {}).items()},
                   prior_weight=float(header.get("prior_weight", 0.0)),
                   feature_set=str(header.get("feature_set", "char13")))


def top_k_accuracy(model: CategoryModel, items: Sequence[tuple[str, str]], k: int = 3) -> tuple[float, float]:
    """(top-1, top-k) share of ``(code, text)`` items whose code the model ranks first / in
    its first ``k``."""
    items = [(c, t) for c, t in items if c != NONE_LABEL]
    top1 = topk = 0
    for code, text in items:
        labels = [lab for lab, _ in model.rank(text, k)]
        top1 += labels[:1] == [code]
        topk += code in labels
    n = max(1, len(items))
    return top1 / n, topk / n
