"""Category suggestion: the trained model against the old keyword lexicon, in one run.

    nice -n 10 .venv/bin/python bench/classifier_bench.py [--repeat 3]

Trains the model from the corpus (fixed seed, as `hotline extract train` without
corrections), then scores on
- the corpus's held-out split (written with other frames and phrasings than training,
  never tuned on): top-1, top-3, the 不确定 rate and the accuracy of the answers that were
  not 不确定;
- tests/unit/extraction/complaints.yaml: 93 texts written by hand by another engineer
  for the lexicon (its "dev" part was what the lexicon was tuned on);
and times one suggestion (model alone, and the whole `Extractor.extract` as the screen pop
runs it: numbers, places, urgency too), p50/p95 over the held-out texts, and the model's
load time from its file. The baseline is the keyword lexicon (`Extractor` without a
model) on the same texts and the same clock. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from case_core.classifier_training import read_corpus, retrain  # noqa: E402
from case_core.domain.categories import load_category_directory  # noqa: E402
from case_core.domain.classifier import CategoryModel  # noqa: E402
from case_core.domain.extraction import Extractor  # noqa: E402
from case_core.domain.reference import Gazetteer, load_areas, load_gazetteer  # noqa: E402

DEMO = ROOT / "case_core" / "demo_data"


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def score(extractor: Extractor, items, repeat: int = 1) -> dict:
    top1 = top3 = uncertain = none = answered_right = 0
    extract_ms: list[float] = []
    for code, text in items:
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = extractor.extract(text)
            extract_ms.append((time.perf_counter() - t0) * 1000)
        codes = [c.code for c in result.candidates]
        top1 += codes[:1] == [code]
        top3 += code in codes
        if result.category_status == "uncertain":
            uncertain += 1
        elif result.category_status == "none":
            none += 1
        elif result.category and result.category.code == code:
            answered_right += 1
    n = len(items)
    answered = n - uncertain - none
    return {
        "texts": n, "top1": round(top1 / n, 4), "top3": round(top3 / n, 4),
        "uncertain_rate": round(uncertain / n, 4), "no_category_rate": round(none / n, 4),
        "accuracy_when_answered": round(answered_right / answered, 4) if answered else None,
        "extract_ms_p50": round(percentile(extract_ms, 0.5), 3),
        "extract_ms_p95": round(percentile(extract_ms, 0.95), 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="timed extractions per text")
    args = p.parse_args()

    directory, _ = load_category_directory(local=[DEMO / "local_categories.csv"])
    places, _ = load_gazetteer(DEMO / "gazetteer.csv")
    areas, _ = load_areas(DEMO / "areas.csv")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        _, path, _ = retrain(Path(tmp))
        train_s = time.perf_counter() - t0
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            model = CategoryModel.load(path)
            loads.append((time.perf_counter() - t0) * 1000)
        file_mb = path.stat().st_size / 1e6
    trained = Extractor(directory, Gazetteer(places), areas, model=model)
    lexicon = Extractor(directory, Gazetteer(places), areas)

    heldout = read_corpus("heldout")
    rank_ms = []
    for _, text in heldout:
        t0 = time.perf_counter()
        model.rank(text, 3)
        rank_ms.append((time.perf_counter() - t0) * 1000)
    hand = [(i["category"], i["text"]) for i in
            yaml.safe_load((ROOT / "tests/unit/extraction/complaints.yaml").read_text(encoding="utf-8"))]

    report = {
        "corpus": {"train": len(read_corpus("train")), "validation": len(read_corpus("validation")),
                   "heldout": len(heldout), "classes": len(model.labels) - 1},
        "model": {"train_s": round(train_s, 1), "load_ms": round(min(loads), 1), "file_mb": round(file_mb, 1),
                  "features": len(model.vocabulary), "threshold": round(model.threshold, 3),
                  "temperature": model.temperature,
                  "rank_ms_p50": round(percentile(rank_ms, 0.5), 3),
                  "rank_ms_p95": round(percentile(rank_ms, 0.95), 3)},
        "heldout": {"model": score(trained, heldout, args.repeat), "lexicon_baseline": score(lexicon, heldout, args.repeat)},
        "hand_written_93": {"model": score(trained, hand), "lexicon_baseline": score(lexicon, hand)},
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
