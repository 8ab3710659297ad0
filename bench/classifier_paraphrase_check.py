"""Model choices checked on unseen phrasing without touching the held-out split. Prints JSON.

    nice -n 10 .venv/bin/python bench/classifier_paraphrase_check.py

A "paraphrase validation": the corpus is rebuilt without `corpus/matters_more.yaml`
(training split, same seed and frames), and each matter code gets six texts whose problem
phrase comes only from that file (training frames, places and noise) — wording the model
never saw, as on the held-out split, but written separately from it. Each variant (linear SVM
C, n-gram range, min_df, twice the training texts, logistic regression) is trained and scored
top-1 / top-3 on it (chatter label excluded). Scores only; no timing is asserted.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from case_core.domain.classifier import NONE_LABEL, model_text  # noqa: E402
from case_core.domain.extraction_data.corpus import build as B  # noqa: E402

MORE = B._load("matters_more.yaml")


class WithoutMore(B.Builder):
    def __init__(self) -> None:
        super().__init__()
        for code, extra in MORE.items():
            self.matters[code] = [p for p in self.matters[code] if p not in extra]
        self.keywords = {c: self._clean_keywords(c, w) for c, w in B._load("keywords.yaml").items()}


def paraphrase_items() -> list[tuple[str, str]]:
    ev = B.Builder()
    for code, extra in MORE.items():
        ev.matters[code] = extra + [B.HELDOUT_MARK] + extra
    ev.keywords = {}
    items = []
    for code in sorted(MORE):
        rng = random.Random(f"pv:{code}")
        items += [(code, ev._text(rng, code, "train")) for _ in range(6)]
    return items


def ngrams(lo: int, hi: int):
    def analyzer(text: str) -> list[str]:
        t = model_text(text)
        return [t[i:i + n] for n in range(lo, hi + 1) for i in range(len(t) - n + 1)]
    return analyzer


def score(train, items, analyzer, clf, min_df=2) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, min_df=min_df)
    clf.fit(vec.fit_transform([t for _, t in train]), [c for c, _ in train])
    s = np.asarray(clf.decision_function(vec.transform([t for _, t in items])), dtype=float)
    labels = list(clf.classes_)
    if NONE_LABEL in labels:
        s[:, labels.index(NONE_LABEL)] = -1e9
    order = np.argsort(-s, axis=1)[:, :3]
    top1 = np.mean([labels[o[0]] == c for o, (c, _) in zip(order, items)])
    top3 = np.mean([c in [labels[i] for i in o] for o, (c, _) in zip(order, items)])
    return {"top1": round(float(top1), 4), "top3": round(float(top3), 4)}


def main() -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    train = WithoutMore().build()["train"]
    items = paraphrase_items()
    out: dict = {"train_texts": len(train), "paraphrase_texts": len(items)}
    svc = lambda c=0.5: LinearSVC(C=c, max_iter=5000)  # noqa: E731
    out["product: svm C=0.5, 1-3-grams, min_df 2"] = score(train, items, ngrams(1, 3), svc())
    out["svm C=0.2"] = score(train, items, ngrams(1, 3), svc(0.2))
    out["svm C=1"] = score(train, items, ngrams(1, 3), svc(1.0))
    out["1-2-grams"] = score(train, items, ngrams(1, 2), svc())
    out["1-4-grams"] = score(train, items, ngrams(1, 4), svc())
    out["min_df 1"] = score(train, items, ngrams(1, 3), svc(), min_df=1)
    out["logistic regression C=10"] = score(train, items, ngrams(1, 3),
                                            LogisticRegression(C=10, max_iter=300))
    B.SPLITS["train"] = 72
    out["72 training texts per code"] = score(WithoutMore().build()["train"], items, ngrams(1, 3), svc())
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
