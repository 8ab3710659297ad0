"""Cross-validation of the category model on the TRAINING wording only, grouped by phrase.
Prints JSON.

    nice -n 10 .venv/bin/python bench/classifier_cv.py [--folds 4] [--variants product,lr,...]
        [--added matters_colloquial.yaml,components_more.yaml]

The held-out split is written from phrases the training split never uses, so a random
k-fold over ``train.csv`` (where every phrase appears in every fold) scores ~99 % and says
nothing about unseen wording. Here each fold withholds a share of the *training* pools
instead — every K-th matter phrasing of each code (matters*.yaml before ``||``), every K-th
problem phrase of each component kind and of the generic pool, every K-th object name of
each component (the test texts may use any training name, as held-out texts may) — builds
36 training and 6 validation texts per code from the rest (same builder, frames, places and noise as
`corpus/build.py`) and 8 test texts per code from the withheld phrases (no keyword tags,
as on the held-out split). The name-match lexicon is rebuilt from the fold's own training
wording, so a withheld phrase's keyword does not leak through it. The held-out split is
never read and the held-out pools of phrasing.yaml are never used. Scores only; no timing is asserted.

Folds are cut from the corpus without the round-4 files (`build.ROUND4`); ``--added`` puts
those files on every fold's training side, so runs with and without them are scored on the
same test texts and their difference is what the added wording brings. ``--variants`` names
entries of `case_core.classifier_training.VARIANTS` (each trained on the same folds).
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from case_core import classifier_training as T  # noqa: E402
from case_core.domain.classifier import NONE_LABEL  # noqa: E402
from case_core.domain.extraction_data.corpus import build as B  # noqa: E402

TRAIN_PER_CODE, VALIDATION_PER_CODE, TEST_PER_CODE = 36, 6, 8


def _fold(pool: list, k: int, folds: int) -> tuple[list, list]:
    rest = [p for i, p in enumerate(pool) if i % folds != k]
    held = [p for i, p in enumerate(pool) if i % folds == k]
    return (rest, held) if rest and held else (pool, pool)


def fold_corpus(k: int, folds: int, seed: int = B.DEFAULT_SEED, added: tuple[str, ...] = ()):
    """(train, validation, test, lexicon) of fold ``k``: the test texts use only withheld
    training phrases of the corpus without the wording files ``added`` (e.g. `B.ROUND4`);
    those files, when given, go to the fold's training side whole — so two runs with and
    without them score on the same test texts."""
    base = B.Builder(seed, skip=B.ROUND4)
    full = B.Builder(seed, skip=tuple(f for f in B.ROUND4 if f not in added))
    fit, test = copy.deepcopy(base), copy.deepcopy(base)
    raw_keywords = B._load("keywords.yaml")
    for code, says in base.matters.items():
        train_says, _ = B._split_marked(says)
        rest, held = _fold(train_says, k, folds)
        extra = [p for p in B._split_marked(full.matters[code])[0] if p not in train_says]
        fit.matters[code] = rest + extra + [B.HELDOUT_MARK] + held
        test.matters[code] = held + [B.HELDOUT_MARK] + held
    fit.keywords = {c: fit._clean_keywords(c, w) for c, w in raw_keywords.items()}
    test.keywords = {}
    for code, (kind, *objects) in base.components.items():
        names = B._split_list(objects)[0]
        rest, _ = _fold(names, k, folds)
        # The last name of a list is the reserved one: a placeholder keeps the pools whole.
        fit.components[code] = [kind, *rest, *full.more_objects.get(code, []), "<reserved>"]
        test.components[code] = [kind, *names, "<reserved>"]
    fit.more_objects, test.more_objects = {}, {}
    for kind, pools in base.phrasing["problems"].items():
        rest, held = _fold(pools["train"], k, folds)
        extra = [p for p in full.phrasing["problems"][kind]["train"] if p not in pools["train"]]
        fit.phrasing["problems"][kind]["train"] = rest + extra
        test.phrasing["problems"][kind]["train"] = held

    def texts(builder, code, n, tag):
        rng = random.Random(f"cv{k}:{tag}:{code}")
        out, seen, tries = [], set(), 0
        while len(out) < n and tries < n * 50:
            tries += 1
            t = builder._text(rng, code, "train")
            if t not in seen:
                seen.add(t)
                out.append((code, t))
        return out

    train, validation, tests = [], [], []
    for code in base.codes():
        train += texts(fit, code, TRAIN_PER_CODE, "train")
        validation += texts(fit, code, VALIDATION_PER_CODE, "validation")
        tests += texts(test, code, TEST_PER_CODE, "test")
    rng = random.Random(f"cv{k}:chatter")
    train += [(NONE_LABEL, fit._chatter(rng)) for _ in range(B.CHATTER["train"])]
    validation += [(NONE_LABEL, fit._chatter(rng)) for _ in range(B.CHATTER["validation"])]
    return train, validation, tests, T.category_lexicon(builder=fit)


def evaluate(model, items) -> dict:
    top1 = top3 = unsure = 0
    comp = [0, 0]
    for code, text in items:
        ranked = model.rank(text, 3)
        labels = [lab for lab, _ in ranked]
        ok = labels[:1] == [code]
        top1 += ok
        top3 += code in labels
        unsure += not ranked or not model.is_confident(ranked[0][1])
        if code[:2] <= "05":
            comp[0] += ok
            comp[1] += 1
    n = len(items)
    return {"top1": top1 / n, "top3": top3 / n, "unsure": unsure / n,
            "components_top1": comp[0] / max(1, comp[1]),
            "matters_top1": (top1 - comp[0]) / max(1, n - comp[1])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--added", default="", help="comma-separated wording files (of corpus/build.py "
                   "ROUND4) added to every fold's training side, never to its test texts")
    p.add_argument("--variants", default="product",
                   help="comma-separated names of T.VARIANTS (default: product)")
    args = p.parse_args(argv)
    names = args.variants.split(",")
    results: dict = {n: [] for n in names}
    for k in range(args.folds):
        added = tuple(f for f in args.added.split(",") if f)
        train, validation, tests, lexicon = fold_corpus(k, args.folds, added=added)
        for name in names:
            model = T.train_model(train, validation=validation, lexicon=lexicon, variant=name)
            results[name].append(evaluate(model, tests))
    out = {"folds": args.folds, "added": args.added, "test_texts_per_fold": len(tests)}
    for name, rows in results.items():
        out[name] = {key: round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0]}
        out[name]["top1_per_fold"] = [round(r["top1"], 4) for r in rows]
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
