"""Agents' corrections of the suggested category (table `category_corrections`, migration
0012): when a case is saved from the desk under another category than the one suggested
for its description, the description and both keys are stored; `hotline extract train`
adds them to the training texts.

    await record_correction(engine, case_id=7, text="…", suggested="matter:01023",
                            chosen="matter:01002", actor="agent1", now=now)
    rows = load_corrections(sync_engine)     # [("01002", "…"), …] for training
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Engine, ForeignKey, Integer, String, Table, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from case_core.adapters.orm import metadata

__all__ = ["category_corrections", "record_correction", "load_corrections", "count_corrections"]

category_corrections = Table(
    "category_corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=True),
    Column("text", Text, nullable=False),
    Column("suggested", String(40), nullable=True),
    Column("chosen", String(40), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("created_at", DateTime(timezone=False), nullable=False),
)


async def record_correction(engine: AsyncEngine, *, case_id: int | None, text: str, suggested: str | None,
                            chosen: str, actor: str, now: datetime) -> bool:
    """Store one correction if ``chosen`` differs from ``suggested``; True when stored."""
    if not chosen or chosen == suggested or not text.strip():
        return False
    async with engine.begin() as conn:
        await conn.execute(insert(category_corrections).values(
            case_id=case_id, text=text, suggested=suggested, chosen=chosen, actor=actor, created_at=now))
    return True


def load_corrections(engine: Engine) -> list[tuple[str, str]]:
    """``(matter code, text)`` of every stored correction to a matter category, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(category_corrections.c.chosen, category_corrections.c.text)
                            .order_by(category_corrections.c.id)).all()
    return [(chosen.split(":", 1)[1], text) for chosen, text in rows if chosen.startswith("matter:")]


async def count_corrections(engine: AsyncEngine) -> int:
    from sqlalchemy import func

    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(category_corrections))).scalar_one())
