"""Training the category model (`case_core.domain.classifier`) from the labelled corpus and
the agents' corrections, and the cached model file the server loads.

    model = cached_model(models_dir)                  # load, or train once and save
    model = train_model(read_corpus("train"), validation=read_corpus("validation"))

Training is scikit-learn: `TfidfVectorizer` over `model_ngrams` (character 1–3-grams,
sublinear tf, n-grams seen in at least two texts) and a one-vs-rest `LinearSVC`, fixed
seed, so the same corpus gives the same model. The softmax temperature and the 不确定
threshold are fitted on the validation split (never on the held-out one): the threshold is
the one that minimises ``2 × confident wrong answers + 1 × 不确定`` — a wrong category costs
the agent more than an open field. A few seconds on one core for ~9,200 texts.

The name-match prior (`CategoryModel.name_prior`) reads `category_lexicon`: each matter's
name without 异常/问题 and the training-side wording of the corpus (object names and
keywords, never the held-out ones). Its weight is the one of `PRIOR_WEIGHTS` with the best
top-1 on the validation split (ties: the smaller), fitted before the temperature.

The model file (``category_model.npz`` in the models folder) records the corpus digest; a
changed corpus retrains on next use. `hotline extract train` retrains with the corrections
(`case_core.corrections`) added to the training texts.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from case_core.domain.classifier import FEATURE_SETS as ANALYZERS
from case_core.domain.classifier import NONE_LABEL, CategoryModel, model_text
from case_core.domain.extraction_data import corpus as corpus_package

__all__ = ["CORPUS_DIR", "MODEL_FILE", "SEED", "read_corpus", "corpus_digest", "train_model",
           "cached_model", "shared_model", "shared_cache_dir", "choose_threshold", "retrain",
           "training_items", "category_lexicon", "PRIOR_WEIGHTS"]

CORPUS_DIR = Path(corpus_package.__file__).resolve().parent
MODEL_FILE = "category_model.npz"
SEED = 12319
C = 0.5
CORRECTION_REPEAT = 3  # an agent's correction weighs like three corpus texts
PRIOR_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2)
# Model choices compared by `bench/classifier_cv.py` (phrase-grouped cross-validation on the
# training wording); "product" is what `train_model` uses unless told otherwise.
VARIANTS: dict[str, dict] = {
    "product": {},
    "c1": {"C": 1.0},
    "c02": {"C": 0.2},
    "mindf1": {"min_df": 1},
    "lr": {"clf": "lr", "C": 10.0},
    "prior05": {"prior_weights": (0.5,)},
    "prior08": {"prior_weights": (0.8,)},
}
_NAME_SUFFIX = re.compile(r"(异常|问题)$")
_DEMO_LOCAL = CORPUS_DIR.parents[2] / "demo_data" / "local_categories.csv"


def category_lexicon(directory: Path = CORPUS_DIR, builder=None) -> dict[str, set[str]]:
    """Words that name each matter code: its name without a bracketed part and without
    异常/问题 (路灯异常 → 路灯), the object names of components.yaml and the keywords of
    keywords.yaml that training texts use (held-out-only wording left out), as the model
    reads them (`model_text`); two characters at least."""
    from case_core.domain.categories import load_category_directory
    from case_core.domain.extraction_data.corpus.build import Builder, _split_list

    builder = builder or Builder()
    local = [_DEMO_LOCAL] if _DEMO_LOCAL.is_file() else []
    categories, _ = load_category_directory(local=local)
    words: dict[str, set[str]] = {}
    for c in categories:
        if c.kind == "matter":
            words.setdefault(c.code, set()).add(_NAME_SUFFIX.sub("", re.sub(r"[（(].*?[)）]", "", c.name)))
    for code, (_, *objects) in builder.components.items():
        words.setdefault(code, set()).update(_split_list(objects)[0])
        words[code].update(getattr(builder, "more_objects", {}).get(code, ()))
    for code, keywords in builder.keywords.items():
        words.setdefault(code, set()).update(keywords)
    return {code: {w for w in map(model_text, ws) if len(w) >= 2} for code, ws in words.items()}


def read_corpus(split: str, directory: Path = CORPUS_DIR) -> list[tuple[str, str]]:
    """``(code, text)`` rows of ``train``, ``validation`` or ``heldout``."""
    with (directory / f"{split}.csv").open(encoding="utf-8", newline="") as f:
        return [(row["code"], row["text"]) for row in csv.DictReader(f)]


def corpus_digest(directory: Path = CORPUS_DIR) -> str:
    h = hashlib.sha256()
    for split in ("train", "validation"):
        h.update((directory / f"{split}.csv").read_bytes())
    return h.hexdigest()[:16]


def _softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    s = scores * temperature
    s = np.exp(s - s.max(axis=1, keepdims=True))
    return s / s.sum(axis=1, keepdims=True)


def choose_threshold(top_p: np.ndarray, correct: np.ndarray, chatter: np.ndarray | None = None,
                     wrong_cost: float = 2.0) -> float:
    """The probability under which an answer becomes 不确定, minimising
    ``wrong_cost × confident wrong + 1 × 不确定 where the category was right`` (for
    ``chatter``, text naming no problem, 不确定 is the right answer and costs nothing)."""
    chatter = np.zeros(len(top_p), dtype=bool) if chatter is None else chatter
    best_t, best_cost = 0.0, float("inf")
    for t in np.unique(np.concatenate([[0.0], top_p])):
        answered = top_p >= t
        cost = wrong_cost * np.sum(answered & ~correct) + np.sum(~answered & ~chatter)
        if cost < best_cost:
            best_t, best_cost = float(t), cost
    return best_t


def train_model(items: Sequence[tuple[str, str]], *, validation: Sequence[tuple[str, str]] = (),
                seed: int = SEED, meta: dict | None = None,
                lexicon: dict[str, set[str]] | None = None, variant: str = "product") -> CategoryModel:
    """Fit the vectoriser and the linear model on ``(code, text)`` items; prior weight,
    temperature and threshold from ``validation`` when given. ``lexicon`` (code → words)
    defaults to `category_lexicon`; ``{}`` turns the name-match prior off."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    v = VARIANTS[variant]
    codes = [c for c, _ in items]
    analyzer = ANALYZERS[v.get("features", "char13")]
    vectorizer = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, min_df=v.get("min_df", 2),
                                 dtype=np.float64)
    x = vectorizer.fit_transform([t for _, t in items])
    if v.get("clf") == "lr":
        from sklearn.linear_model import LogisticRegression
        clf = LogisticRegression(C=v.get("C", 10.0), max_iter=2000)
    else:
        clf = LinearSVC(C=v.get("C", C), random_state=seed, max_iter=5000,
                        class_weight=v.get("class_weight"))
    clf.fit(x, codes)
    labels = tuple(str(c) for c in clf.classes_)
    weights = clf.coef_.T.astype(np.float32) if len(labels) > 2 else np.hstack(
        [-clf.coef_.T, clf.coef_.T]).astype(np.float32)
    bias = clf.intercept_ if len(labels) > 2 else np.array([-clf.intercept_[0], clf.intercept_[0]])
    temperature, threshold = 1.0, 0.0
    aliases: dict[str, tuple[int, ...]] = {}
    for code, words in (category_lexicon() if lexicon is None else lexicon).items():
        if code in labels:
            for w in words:
                aliases[w] = tuple(sorted({*aliases.get(w, ()), labels.index(code)}))
    prior_weight = 0.0
    if validation:
        xv = vectorizer.transform([t for _, t in validation])
        scores = np.asarray(xv @ weights) + bias
        truth = np.array([labels.index(c) if c in labels else -1 for c, _ in validation])
        named = CategoryModel(labels=labels, vocabulary={}, idf=np.empty(0), weights=weights, bias=bias,
                              aliases=aliases)
        prior = np.array([named.name_prior(t) for _, t in validation])
        none = np.array([lab == NONE_LABEL for lab in labels])
        real = (truth >= 0) & ~none[np.maximum(truth, 0)]
        best_top1 = -1.0
        for w in v.get("prior_weights", PRIOR_WEIGHTS):
            top = np.where(none, -np.inf, scores + w * prior).argmax(axis=1)
            top1 = float(np.mean(top[real] == truth[real])) if real.any() else 0.0
            if top1 > best_top1 + 1e-12:
                best_top1, prior_weight = top1, float(w)
        scores = scores + prior_weight * prior
        best = None
        for temp in (1, 2, 3, 5, 8, 12, 16, 24, 32):
            p = _softmax(scores, temp)
            nll = -np.mean(np.log(np.maximum(p[np.arange(len(truth)), np.maximum(truth, 0)], 1e-12)))
            if best is None or nll < best[0]:
                best = (nll, float(temp))
        temperature = best[1]
        p = _softmax(scores, temperature)
        # As `CategoryModel.rank` sees it: the best category, with chatter's share kept.
        none = np.array([lab == NONE_LABEL for lab in labels])
        categories = np.where(none, 0.0, p)
        best = categories.argmax(axis=1)
        top_p = categories.max(axis=1)
        is_chatter = np.array([c == NONE_LABEL for c, _ in validation])
        threshold = choose_threshold(top_p, (best == truth) & ~is_chatter, is_chatter)
    vocabulary = {str(k): int(v) for k, v in vectorizer.vocabulary_.items()}
    return CategoryModel(labels=labels, vocabulary=vocabulary, idf=vectorizer.idf_.astype(np.float64),
                         weights=weights, bias=np.asarray(bias, dtype=np.float64),
                         temperature=temperature, threshold=threshold,
                         meta={"seed": seed, "texts": len(items), **(meta or {})},
                         aliases=aliases, prior_weight=prior_weight,
                         feature_set=v.get("features", "char13"))


def training_items(corrections: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """The corpus's training split plus each correction ``(code, text)`` repeated
    `CORRECTION_REPEAT` times."""
    items = read_corpus("train")
    for code, text in corrections:
        items += [(code, text)] * CORRECTION_REPEAT
    return items


def corrections_digest(corrections: Sequence[tuple[str, str]]) -> str:
    """A fingerprint of the agents' corrections, order-independent."""
    h = hashlib.sha256()
    for code, text in sorted(corrections):
        h.update(f"{code}\t{text}\n".encode())
    return h.hexdigest()[:16]


def retrain(models_dir: Path, corrections: Sequence[tuple[str, str]] = (), *,
            force: bool = True) -> tuple[CategoryModel, Path, bool]:
    """Train from corpus + corrections and write the model file; returns (model, path,
    trained). With ``force=False`` a model already trained on this corpus and these
    corrections is kept (a repeated `make run` does not spend seconds retraining)."""
    path = Path(models_dir) / MODEL_FILE
    fingerprint = corrections_digest(corrections)
    if not force:
        current = _load_current(path)
        if current is not None and current.meta.get("corrections_digest") == fingerprint:
            return current, path, False
        if current is None and not corrections:
            # A new models folder and no corrections yet: the machine's corpus-only model
            # (trained once, `shared_model`) is exactly what training would produce.
            model = shared_model()
            model.meta = {**model.meta, "corrections_digest": fingerprint}
            model.save(path)
            return model, path, False
    model = train_model(training_items(corrections), validation=read_corpus("validation"),
                        meta={"corpus": corpus_digest(), "corrections": len(corrections),
                              "corrections_digest": fingerprint})
    model.save(path)
    return model, path, True


def shared_cache_dir() -> Path:
    """Where a corpus-only model is kept for every configuration on this machine
    (``$XDG_CACHE_HOME/hotline12319``), so a new models folder does not train again."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hotline12319"


def _load_current(path: Path) -> CategoryModel | None:
    if not path.is_file():
        return None
    try:
        model = CategoryModel.load(path)
    except ValueError:
        return None
    return model if model.meta.get("corpus") == corpus_digest() else None


def shared_model() -> CategoryModel:
    """The corpus-only model in `shared_cache_dir`, trained and saved there first if
    missing (``python -m case_core.classifier_training`` does this ahead of time)."""
    shared = shared_cache_dir() / f"category_model-{corpus_digest()}.npz"
    model = _load_current(shared)
    if model is None:
        model = train_model(training_items(), validation=read_corpus("validation"),
                            meta={"corpus": corpus_digest(), "corrections": 0})
        model.save(shared)
        for old in shared.parent.glob("category_model-*.npz"):
            if old != shared:
                old.unlink(missing_ok=True)
    return model


def cached_model(models_dir: Path) -> CategoryModel:
    """The model in ``models_dir``; if it is missing, unreadable or from another corpus,
    the corpus-only `shared_model` is copied in."""
    path = Path(models_dir) / MODEL_FILE
    model = _load_current(path)
    if model is not None:
        return model
    model = shared_model()
    model.save(path)
    return model


if __name__ == "__main__":
    print(f"category model for corpus {corpus_digest()}: {len(shared_model().labels)} labels, "
          f"in {shared_cache_dir()}")
