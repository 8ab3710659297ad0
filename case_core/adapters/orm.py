"""Database tables (SQLAlchemy Core metadata) for cases, calls, recordings and users.

Rows are translated to and from domain objects in `sqlalchemy_repo`; the domain never sees
these tables. Alembic migrations in `case_core/migrations` create exactly this schema.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("number", String(32), nullable=False, unique=True),
    Column("channel", String(32), nullable=False),
    Column("kind", String(32), nullable=False, default="report"),
    Column("case_type", String(16), nullable=False, default="normal"),
    Column("status", String(32), nullable=False),
    Column("reporter_phone", String(64)),
    Column("description", Text, nullable=False, default=""),
    Column("address", Text, nullable=False, default=""),
    Column("category_kind", String(16)),
    Column("category_code", String(16)),
    Column("grid_cell", String(15)),
    Column("department", String(64)),
    Column("call_id", String(255)),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("updated_at", DateTime(timezone=False), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    # Domain state that has no column of its own (pending applications, deadlines...), as JSON.
    Column("state_json", Text, nullable=False, default="{}"),
)
Index("ix_cases_created_at", cases.c.created_at)
# 0008 replaced ix_cases_status (status): worklists by status in date order ("oldest
# registered first") read this index in order instead of sorting every case of the status.
Index("ix_cases_status_created", cases.c.status, cases.c.created_at, cases.c.id)
Index("ix_cases_reporter_phone", cases.c.reporter_phone)
# Added in 0002 (workflow): who holds the case and when its earliest open step is due.
cases.append_column(Column("inspector", String(64)))
cases.append_column(Column("due_at", DateTime(timezone=False)))
# Added in 0014: where the case was found (WGS-84), when known.
cases.append_column(Column("lat", Float))
cases.append_column(Column("lon", Float))
# Worklists: "dispatched, department X, newest first" and "checking, inspector Y".
Index("ix_cases_status_department_created", cases.c.status, cases.c.department, cases.c.created_at)
Index("ix_cases_department_created", cases.c.department, cases.c.created_at)
Index("ix_cases_inspector_status", cases.c.inspector, cases.c.status)
Index("ix_cases_due_at", cases.c.due_at)
Index("ix_cases_category", cases.c.category_kind, cases.c.category_code)
Index("ix_cases_type_status_created", cases.c.case_type, cases.c.status, cases.c.created_at)

case_history = Table(
    "case_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("at", DateTime(timezone=False), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("before_status", String(32)),
    Column("after_status", String(32)),
    Column("fields_json", Text, nullable=False, default="{}"),
    UniqueConstraint("case_id", "seq", name="uq_case_history_case_seq"),
)
# Added in 0002: the case version this entry produced and the timed steps it ended.
case_history.append_column(Column("version", Integer))
case_history.append_column(Column("ended_json", Text))

# Evaluation facts (one row per countable thing, see case_core.domain.evaluation.Fact),
# rewritten for a case whenever it changes, so indicators are SQL aggregates.
# `flipped_at`: when `ok` took its final value (before that it was the opposite).
case_facts = Table(
    "case_facts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("at", DateTime(timezone=False), nullable=False),
    Column("role", String(32), nullable=False),
    Column("person", String(64), nullable=False, default=""),
    Column("department", String(64)),
    Column("grid_cell", String(15)),
    Column("on_time", Boolean),
    Column("ok", Boolean),
    Column("flipped_at", DateTime(timezone=False)),
    Column("still_open", Boolean, nullable=False, default=False),
)
Index("ix_case_facts_case_id", case_facts.c.case_id)
# Covering index: a period's evaluation by department reads only this index.
Index(
    "ix_case_facts_at_cover",
    case_facts.c.at,
    case_facts.c.kind,
    case_facts.c.department,
    case_facts.c.still_open,
    case_facts.c.on_time,
    case_facts.c.ok,
    case_facts.c.flipped_at,
)

# Added in 0008: case_facts counted per day and judgement, per grouping dimension, kept
# in step with case_facts in the same transaction (sqlalchemy_repo._sync_facts and
# _apply_rollup; rebuild_rollup recounts it from case_facts), so
# a period's evaluation reads a few rows per day instead of every fact.
#   dim: department | role | person | community (area: the grid cell's first 12
#        characters; district and street are its prefixes); key '' stands for NULL/none.
#   on_time, ok: 1 true, 0 false, -1 NULL.  flip_day: the day of flipped_at (ok had the
#        opposite value before it); 1900-01-01 when ok never flipped (not date.min: asyncpg
#        reads and writes that as -infinity).
#   n may reach 0 when facts are rewritten; readers skip groups whose total is 0.
ROLLUP_DIMS = ("department", "role", "person", "community")
ROLLUP_NO_FLIP = date(1900, 1, 1)
case_fact_rollup = Table(
    "case_fact_rollup",
    metadata,
    Column("dim", String(12), nullable=False),
    Column("day", Date, nullable=False),
    Column("key", String(64), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("on_time", SmallInteger, nullable=False),
    Column("ok", SmallInteger, nullable=False),
    Column("still_open", Boolean, nullable=False),
    Column("flip_day", Date, nullable=False),
    Column("n", Integer, nullable=False),
    PrimaryKeyConstraint("dim", "day", "key", "kind", "on_time", "ok", "still_open", "flip_day"),
    sqlite_with_rowid=False,
)
# Finds the few facts whose judgement flipped on the last day of a period ending mid-day.
Index("ix_case_facts_flipped_at", case_facts.c.flipped_at,
      sqlite_where=case_facts.c.flipped_at.isnot(None), postgresql_where=case_facts.c.flipped_at.isnot(None))

# -- reference data (imported with `hotline import …`) ---------------------------------
ref_categories = Table(
    "ref_categories",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("code", String(5), primary_key=True),
    Column("class_code", String(2), nullable=False),
    Column("class_name", String(128), nullable=False),
    Column("name", String(128), nullable=False),
    Column("local", Boolean, nullable=False, default=False),
)

ref_areas = Table(
    "ref_areas",
    metadata,
    Column("code", String(12), primary_key=True),
    Column("level", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    Column("parent_code", String(12)),
)

ref_grid_cells = Table(
    "ref_grid_cells",
    metadata,
    Column("grid_id", String(15), primary_key=True),
    Column("name", String(128), nullable=False, default=""),
    Column("inspector", String(64), nullable=False, default=""),
    Column("x", Float),
    Column("y", Float),
)
# Added in 0014 (地理编码): the cell's polygon as a GeoJSON geometry, WGS-84 lon/lat.
ref_grid_cells.append_column(Column("geometry_json", Text))

ref_places = Table(
    "ref_places",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("grid_id", String(15), nullable=False),
    Column("aliases", Text, nullable=False, default=""),
)

ref_departments = Table(
    "ref_departments",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("parent_code", String(40)),
    Column("phone", String(64), nullable=False, default=""),
)

ref_routing_rules = Table(
    "ref_routing_rules",
    metadata,
    Column("line", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False, default=""),
    Column("code", String(5), nullable=False, default=""),
    Column("area", String(15), nullable=False, default=""),
    Column("case_type", String(16), nullable=False, default=""),
    Column("department", String(40)),
    Column("limits_json", Text, nullable=False, default="{}"),
)

ref_holidays = Table(
    "ref_holidays",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("workday", Boolean, nullable=False),
    Column("name", String(64), nullable=False, default=""),
)

case_number_seq = Table(
    "case_number_seq",
    metadata,
    Column("day", String(8), primary_key=True),
    Column("last_seq", Integer, nullable=False),
)

calls = Table(
    "calls",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("call_id", String(255), nullable=False, unique=True),
    Column("direction", String(16), nullable=False),
    Column("did", String(32)),
    Column("caller", String(64)),
    Column("started_at", DateTime(timezone=False), nullable=False),
    Column("answered_at", DateTime(timezone=False)),
    Column("ended_at", DateTime(timezone=False)),
    Column("end_reason", String(64)),
    Column("ivr_path", Text, nullable=False, default=""),
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="SET NULL")),
    # [cluster] node_id of the node that handled the call (None: a single node)
    Column("node_id", String(32)),
)
Index("ix_calls_caller", calls.c.caller)
Index("ix_calls_node_open", calls.c.node_id, calls.c.ended_at)

recordings = Table(
    "recordings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("call_id", String(255), nullable=False),
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="SET NULL")),
    Column("kind", String(16), nullable=False),  # "call" (whole call) or "message" (voicemail)
    Column("path", Text, nullable=False),
    Column("channels", Integer, nullable=False, default=1),
    Column("duration_s", Float, nullable=False, default=0.0),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("node_id", String(32)),  # the node that wrote the file (None: a single node)
)
Index("ix_recordings_case_id", recordings.c.case_id)

# One row per cluster node (issue 17): its heartbeat and the state asked of it. "down" is
# not stored: it is a heartbeat older than [cluster] down_after_s (callcenter.cluster.membership).
cluster_nodes = Table(
    "cluster_nodes",
    metadata,
    Column("node_id", String(32), primary_key=True),
    Column("state", String(16), nullable=False, default="up"),  # "up" | "draining"
    Column("sip", String(128), nullable=False, default=""),
    Column("web", String(255), nullable=False, default=""),
    Column("started_at", DateTime(timezone=False), nullable=False),
    Column("heartbeat_at", DateTime(timezone=False), nullable=False),
    Column("active_calls", Integer, nullable=False, default=0),
)
Index("ix_recordings_call_id", recordings.c.call_id)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False, default=""),
    Column("role", String(32), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=False), nullable=False),
    # A department code (reference data) for 处置部门 staff; NULL: works across departments.
    Column("department", String(32), nullable=True),
    # A disabled user can neither log in nor use a token (migration 0017).
    Column("disabled", Boolean, nullable=False, default=False, server_default=false()),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=False), nullable=False),
    # read | write | admin (web.auth.TOKEN_SCOPES); NULL expires_at: never (tokens from before 0017).
    Column("scope", String(16), nullable=False, default="write", server_default="write"),
    Column("expires_at", DateTime(timezone=False), nullable=True),
    Column("revoked_at", DateTime(timezone=False), nullable=True),
)
