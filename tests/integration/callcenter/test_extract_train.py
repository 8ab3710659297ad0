"""`hotline extract train` as an operator runs it: corpus + the agents' stored corrections
→ a new model file in ``[stt] models_dir`` that `hotline extract TEXT` then uses."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from callcenter.cli import main
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import make_engine, sync_url
from case_core.classifier_training import MODEL_FILE
from case_core.corrections import record_correction

# Words no corpus text uses, so only the correction can teach the model their category.
TEXT = "那个铁疙瘩转盘又咯吱咯吱转不动了"


def test_train_learns_stored_corrections(tmp_path, capsys):
    """After a correction is stored, train reports it and the retrained model suggests the agent's category."""
    db = f"sqlite:///{tmp_path / 'hotline.db'}"
    config = tmp_path / "hotline.toml"
    config.write_text(f'[database]\nurl = "{db}"\n[stt]\nmodels_dir = "models"\n', encoding="utf-8")
    migrate.upgrade(sync_url(db))

    async def store() -> None:
        engine = make_engine(db)
        try:
            for _ in range(2):
                assert await record_correction(engine, case_id=None, text=TEXT, suggested="matter:01037",
                                               chosen="matter:01046", actor="agent1", now=datetime(2026, 12, 7, 9))
        finally:
            await engine.dispose()

    asyncio.run(store())
    assert main(["extract", "train", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["corrections"] == 2 and report["classes"] >= 254
    assert report["validation_top1"] >= 0.95
    assert (tmp_path / "models" / MODEL_FILE).is_file()

    assert main(["extract", "--config", str(config), TEXT]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["candidates"][0]["key"] == "matter:01046"

    # A repeated set-up (`make run` runs `extract train --if-changed`) keeps this model, and a
    # new correction makes it train again.
    assert main(["extract", "train", "--if-changed", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["trained"] is False

    async def one_more() -> None:
        engine = make_engine(db)
        try:
            assert await record_correction(engine, case_id=None, text="桥下那个铁疙瘩又响了", suggested="matter:01037",
                                           chosen="matter:01046", actor="agent1", now=datetime(2026, 12, 7, 10))
        finally:
            await engine.dispose()

    asyncio.run(one_more())
    assert main(["extract", "train", "--if-changed", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trained"] is True and report["corrections"] == 3


def test_a_new_models_folder_without_corrections_takes_the_machine_model(tmp_path, capsys):
    """`extract train --if-changed` on a fresh installation copies the corpus-only model instead of training again."""
    db = f"sqlite:///{tmp_path / 'hotline.db'}"
    config = tmp_path / "hotline.toml"
    config.write_text(f'[database]\nurl = "{db}"\n[stt]\nmodels_dir = "models"\n', encoding="utf-8")
    migrate.upgrade(sync_url(db))
    assert main(["extract", "train", "--if-changed", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trained"] is False and report["corrections"] == 0
    assert (tmp_path / "models" / MODEL_FILE).is_file()
    assert main(["extract", "train", "--if-changed", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["trained"] is False
