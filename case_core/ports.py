"""The storage the case services need, as interfaces, one per aggregate.

`case_core.service.CaseService` and the read helpers beside it depend on `CaseRepository`,
never on a database library; `case_core.adapters.sqlalchemy_repo.SqlRepository` (SQLite and
PostgreSQL) implements it, and a test may hand in any object with the same methods.

The unit of work is `Cases.update_states(case_ids, mutate)`: in one transaction it loads the
cases' domain states, calls the pure `mutate` (the workflow's `apply`), checks each
version (optimistic locking: `VersionConflict` when another writer got there first) and
writes states, history, evaluation facts and the outbox rows of their events together —
all or nothing. Reads return the frozen views of `case_core.views`; lookups of an unknown
id raise `case_core.views.NotFound`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Mapping, Protocol, TypeVar

from case_core.domain.evaluation import Fact
from case_core.domain.workflow import CaseState
from case_core.views import CaseFilter, CaseSelection, CaseView

__all__ = ["CallRecords", "CaseNumbers", "CaseQueries", "CaseRepository", "Cases", "EvaluationCounts",
           "ReferenceRows"]

R = TypeVar("R")


class CaseNumbers(Protocol):
    async def allocate_case_number(self, day: date) -> str:
        """The day's next case number, in its own short transaction (a gap, never a duplicate)."""
        ...


class Cases(Protocol):
    """The case aggregate: its state, history and recordings' links; `update_states` is the unit of work."""

    async def get_case(self, case_id: int) -> CaseView: ...
    async def find_case_by_number(self, number: str) -> CaseView | None: ...
    async def case_id_for_number(self, number: str) -> int | None: ...
    async def case_ids_for_numbers(self, numbers) -> dict[str, int]: ...
    async def load_state(self, case_id: int) -> CaseState: ...

    async def insert_case_state(self, state: CaseState, *, call_id: str | None = None,
                                recording_ids: tuple[int, ...] = (), extra: dict[str, Any] | None = None,
                                events: list | tuple = ()) -> int: ...

    async def update_states(self, case_ids: list[int],
                            mutate: Callable[[list[CaseState]], tuple[list[CaseState], R]]
                            ) -> tuple[R, list[CaseView]]: ...

    async def replace_description(self, case_id: int, expected: str, text: str) -> bool: ...
    async def list_cases(self, **filters: Any) -> list[CaseView]: ...
    async def search_cases(self, **filters: Any) -> list[CaseView]: ...

    async def duplicate_candidates(self, *, category: str | None, created_at: datetime, window_days: float,
                                   exclude_id: int | None, limit: int = 200) -> list[CaseView]: ...


class CallRecords(Protocol):
    """Calls (CDR rows) and their recordings, and their link to a case."""

    async def call_started(self, *, call_id: str, direction: str, did: str | None, caller: str | None,
                           now: datetime) -> None: ...
    async def call_answered(self, call_id: str, now: datetime) -> None: ...
    async def call_ended(self, call_id: str, now: datetime, reason: str, ivr_path: str = "") -> None: ...

    async def add_recording(self, *, call_id: str, kind: str, path: str, channels: int, duration_s: float,
                            now: datetime, case_id: int | None = None) -> int: ...
    async def update_recording(self, recording_id: int, *, duration_s: float) -> None: ...
    async def attach_call_recordings(self, call_id: str, case_id: int) -> None: ...
    async def link_call(self, call_id: str | None, case_id: int) -> bool: ...
    async def call_records(self, start: datetime, end: datetime) -> list[dict[str, Any]]: ...


class EvaluationCounts(Protocol):
    """The evaluation rollup (综合评价): judged facts counted per group."""

    async def evaluation_counts(self, start: datetime, end: datetime, group_by: str | None,
                                area_level: str = "street", *, rollup: bool = True
                                ) -> dict[str | None, list[tuple[Fact, int]]]: ...


class ReferenceRows(Protocol):
    """Imported reference data (categories, areas, grid cells, gazetteer, departments, routing, holidays)."""

    async def reference_rows(self, table: str) -> list[dict[str, Any]]: ...


class CaseQueries(Protocol):
    """Pages and counts of the case list (`/cases`) and the worklists, from plain values
    (`case_core.views.CaseFilter`, `CaseSelection`; `scope` is column → value, least privilege)."""

    async def case_page(self, f: CaseFilter, now: datetime, calendar, *, selection: CaseSelection | None = None,
                        scope: Mapping[str, str] | None = None, urgent_first: bool = False,
                        page_size: int = 30) -> tuple[list[int], int, int]:
        """(ids of the page, total matching, the page number actually shown)."""
        ...

    async def case_counts(self, now: datetime, *, selection: CaseSelection | None = None,
                          scope: Mapping[str, str] | None = None, f: CaseFilter | None = None) -> dict[str, int]:
        """`total`, `urgent`, `overdue` of the cases `case_page` would list."""
        ...


class CaseRepository(CaseNumbers, Cases, CallRecords, EvaluationCounts, ReferenceRows, Protocol):
    """Everything the case services store and read."""
