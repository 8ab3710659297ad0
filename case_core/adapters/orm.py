"""Database tables (SQLAlchemy Core metadata) for cases, calls, recordings and users.

Rows are translated to and from domain objects in `sqlalchemy_repo`; the domain never sees
these tables. Alembic migrations in `case_core/migrations` create exactly this schema.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
Index("ix_cases_status", cases.c.status)
Index("ix_cases_reporter_phone", cases.c.reporter_phone)

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
)
Index("ix_calls_caller", calls.c.caller)

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
)
Index("ix_recordings_case_id", recordings.c.case_id)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False, default=""),
    Column("role", String(32), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=False), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=False), nullable=False),
)
