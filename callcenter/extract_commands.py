"""`hotline extract train`: retrain the category model from the labelled corpus plus the
agents' stored corrections, and write it where the server loads it (``[stt] models_dir``).

`hotline extract TEXT` itself is registered by `callcenter.stt.commands`; this module
wraps that subcommand so that ``train`` as the only argument retrains instead.
"""
from __future__ import annotations

import argparse
import json
import time

__all__ = ["register", "cmd_extract_train"]


def cmd_extract_train(settings, args) -> int:
    from case_core.adapters import migrate
    from case_core.adapters.sqlalchemy_repo import make_sync_engine, sync_url
    from case_core.classifier_training import read_corpus, retrain
    from case_core.corrections import load_corrections
    from case_core.domain.classifier import top_k_accuracy
    from case_core.suggest import models_dir

    url = sync_url(settings.database_url())
    migrate.upgrade(url)
    engine = make_sync_engine(url)
    try:
        corrections = load_corrections(engine)
    finally:
        engine.dispose()
    started = time.monotonic()
    model, path, trained = retrain(models_dir(settings), corrections, force=not args.if_changed)
    top1, top3 = top_k_accuracy(model, read_corpus("validation"))
    print(json.dumps({
        "model": str(path), "trained": trained,
        "texts": model.meta.get("texts"), "corrections": len(corrections),
        "classes": len(model.labels), "threshold": round(model.threshold, 3),
        "validation_top1": round(top1, 4), "validation_top3": round(top3, 4),
        "seconds": round(time.monotonic() - started, 1),
    }, ensure_ascii=False, indent=2))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    extract = sub.choices.get("extract")
    if extract is None:
        return
    analyse = extract.get_default("func")

    def dispatch(settings, args) -> int:
        if list(args.text) == ["train"]:
            return cmd_extract_train(settings, args)
        return analyse(settings, args)

    extract.add_argument("--if-changed", action="store_true", dest="if_changed",
                         help="with train: keep the model when the corpus and the corrections are unchanged")
    extract.set_defaults(func=dispatch)
    extract.description = ("hotline extract TEXT: suggestion as JSON; "
                           "hotline extract train: retrain the category model from the corpus "
                           "and the agents' corrections")
