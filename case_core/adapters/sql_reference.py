"""Imported reference data tables: `case_core.ports.ReferenceRows`.

A mixin of `case_core.adapters.sqlalchemy_repo.SqlRepository`, which brings `self.engine`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from case_core.adapters import orm


_REF_TABLES = {
    "categories": orm.ref_categories,
    "areas": orm.ref_areas,
    "grid_cells": orm.ref_grid_cells,
    "gazetteer": orm.ref_places,
    "departments": orm.ref_departments,
    "routing": orm.ref_routing_rules,
    "holidays": orm.ref_holidays,
}


class ReferenceSql:
    engine: AsyncEngine

    # -- reference data ---------------------------------------------------------------------
    async def replace_reference(self, table: str, rows: list[dict[str, Any]], *, local: bool = False) -> int:
        """Replace one reference table's contents (local categories: only the local rows), atomically."""
        t = _REF_TABLES[table]
        async with self.engine.begin() as conn:
            stmt = delete(t)
            if table == "categories":
                stmt = stmt.where(t.c.local == local)
            await conn.execute(stmt)
            if rows:
                await conn.execute(insert(t), rows)
        return len(rows)

    async def reference_rows(self, table: str) -> list[dict[str, Any]]:
        t = _REF_TABLES[table]
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(select(t).order_by(*t.primary_key.columns))).all()]
