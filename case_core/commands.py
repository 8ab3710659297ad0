"""`hotline import …` (reference data from CSV), `hotline evaluate` (综合评价 as JSON) and
`hotline user add|list|set` (staff accounts: role, and the department of 处置部门 staff).

Imports validate the whole file with the domain loaders before anything is written, store
the good rows in the ref_* tables (replacing that table's previous contents in one
transaction), print the count and each bad row as `FILE:LINE: reason` on stderr, and exit
2 if any row was bad. Nothing is written — whatever the flags — when the file is
unreadable, lacks columns, has no valid row (a header-only file would empty the table),
looks truncated (its last line is incomplete), or would leave less than half of the
table's rows (`--allow-shrink` to mean it). A badly quoted line is reported at its own
number and cannot swallow the lines after it (`case_core.domain.csv_text`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from case_core.errors import UserError
from case_core.domain import reference
from case_core.domain.calendar import load_holiday_file
from case_core.domain.categories import CategoryDirectory, load_categories
from case_core.domain.evaluation import DEFAULT_WEIGHTS, GROUP_BY
from case_core.service import category_list

KINDS = ("categories", "areas", "grid_cells", "gazetteer", "departments", "routing", "holidays")
_NOUNS = {"categories": "categories", "areas": "areas", "grid_cells": "grid cells", "gazetteer": "places",
          "departments": "departments", "routing": "routing rules", "holidays": "holiday entries"}


def _repo(settings):
    from case_core.adapters import migrate
    from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url

    migrate.upgrade(sync_url(settings.database_url()))
    return SqlRepository(make_engine(settings.database_url()))


async def _validate(repo, kind: str, path: Path, local: bool, crs: str = "wgs84"
                    ) -> tuple[list[dict[str, Any]], list]:
    """Rows for the ref table and the RowErrors, checked against what is already imported."""
    if kind == "categories":
        existing = CategoryDirectory(await category_list(repo, local=False)) if local else None
        cats, errors = load_categories(path, existing=existing)
        return [{"kind": c.kind, "code": c.code, "class_code": c.class_code, "class_name": c.class_name,
                 "name": c.name, "local": local} for c in cats], errors
    if kind == "areas":
        areas, errors = reference.load_areas(path)
        return [{"code": a.code, "level": a.level, "name": a.name, "parent_code": a.parent_code} for a in areas], errors
    if kind == "grid_cells":
        communities = [r["code"] for r in await repo.reference_rows("areas") if r["level"] == "community"]
        if path.suffix.lower() in (".geojson", ".json"):
            from case_core.domain import geo

            shapes, errors = geo.load_grid_geojson(path, communities or None, crs=crs)
            return [{"grid_id": s.cell.grid_id, "name": s.cell.name, "inspector": s.cell.inspector,
                     "x": s.cell.x, "y": s.cell.y, "geometry_json": s.geometry_json} for s in shapes], errors
        cells, errors = reference.load_grid_cells(path, communities or None)
        return [{"grid_id": c.grid_id, "name": c.name, "inspector": c.inspector, "x": c.x, "y": c.y,
                 "geometry_json": None} for c in cells], errors
    if kind == "gazetteer":
        grids = [r["grid_id"] for r in await repo.reference_rows("grid_cells")]
        places, errors = reference.load_gazetteer(path, grids or None)
        return [{"name": p.name, "kind": p.kind, "grid_id": p.grid_id, "aliases": "|".join(p.aliases)}
                for p in places], errors
    if kind == "departments":
        depts, errors = reference.load_departments(path)
        return [{"code": d.code, "name": d.name, "parent_code": d.parent_code, "phone": d.phone} for d in depts], errors
    if kind == "routing":
        depts = [r["code"] for r in await repo.reference_rows("departments")]
        cats = {(c.kind, c.code) for c in await category_list(repo)}
        rules, errors = reference.load_routing_rules(path, departments=depts or None, categories=cats)
        return [{"line": r.line, "kind": r.category_kind, "code": r.category_code, "area": r.area_code,
                 "case_type": r.case_type, "department": r.department,
                 "limits_json": json.dumps({k: str(v) for k, v in r.limits.items()})} for r in rules], errors
    entries, errors = load_holiday_file(path)
    errors = [reference.RowError(e.line, e.reason, str(path)) for e in errors]
    return [{"day": e.day.isoformat(), "workday": e.workday, "name": e.name} for e in entries.values()], errors


def _whole_file_problem(path: Path, rows: list, errors: list, existing: int, allow_shrink: bool) -> str | None:
    """Why the file as a whole must not replace the table (None: rows may be imported)."""
    if not rows:
        if any(e.line <= 1 for e in errors):
            return f"{path} cannot be used"
        return f"{path} has no valid row (a header-only or empty file would empty the table)"
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as exc:
        return f"{path} cannot be read ({exc})"
    last = len(text.splitlines())
    csv_file = path.suffix.lower() not in (".geojson", ".json")
    if csv_file and text and not text.endswith(("\n", "\r")) and any(e.line == last for e in errors):
        return f"{path}:{last}: the last line is incomplete: the file looks truncated"
    if not allow_shrink and existing and len(rows) * 2 < existing:
        return (f"{path} has {len(rows)} valid rows where the table holds {existing}: a truncated file? "
                "(pass --allow-shrink to replace the table anyway)")
    return None


def cmd_import(settings, args) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if args.local and args.kind != "categories":
        raise UserError("--local applies to categories only")
    crs = getattr(args, "crs", "wgs84")
    if crs != "wgs84" and (args.kind != "grid_cells" or path.suffix.lower() not in (".geojson", ".json")):
        raise UserError("--crs applies to grid_cells from a .geojson file only")

    async def run() -> tuple[int, list, str | None]:
        repo = _repo(settings)
        try:
            rows, errors = await _validate(repo, args.kind, path, args.local, crs)
            existing = [r for r in await repo.reference_rows(args.kind)
                        if args.kind != "categories" or bool(r.get("local")) == bool(args.local)]
            fatal = _whole_file_problem(path, rows, errors, len(existing), getattr(args, "allow_shrink", False))
            # A table half-replaced by a file with mistakes would silently lose rules.
            if fatal or args.check or (errors and not args.skip_bad):
                return len(rows), errors, fatal
            return await repo.replace_reference(args.kind, rows, local=args.local), errors, None
        finally:
            await repo.close()

    count, errors, fatal = asyncio.run(run())
    for e in errors:
        print(f"{path}:{e.line}: {e.reason}", file=sys.stderr)
    noun = _NOUNS[args.kind]
    if fatal:
        print(f"error: nothing imported: {fatal}", file=sys.stderr)
        return 2
    elif args.check:
        print(f"{count} {noun} valid, {len(errors)} bad rows (checked only, nothing written)")
    elif errors and not args.skip_bad:
        print(f"nothing imported: {count} {noun} valid, {len(errors)} bad rows "
              "(fix them, or import the valid rows with --skip-bad)", file=sys.stderr)
    else:
        print(f"imported {count} {noun} from {path}; {len(errors)} bad rows")
    return 2 if errors else 0


def _day(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def cmd_evaluate(settings, args) -> int:
    from case_core.service import CaseService, evaluation_json

    # --end names the last day of the period (inclusive): the period runs to the start of
    # the next day. A date-time is taken as the exact (exclusive) end.
    zone = ZoneInfo(settings.ivr.timezone)
    # Stored times are the center's naive local times: a bound given with an offset is converted to them.
    start, end = (t.astimezone(zone).replace(tzinfo=None) if t.tzinfo else t
                  for t in (_day(args.start), _day(args.end)))
    if len(args.end.strip()) == 10:
        end += timedelta(days=1)
    if end <= start:
        raise UserError("--end must not be before --start")
    weights = dict(DEFAULT_WEIGHTS)
    for part in args.weight or ():
        code, _, w = part.partition("=")
        if code not in DEFAULT_WEIGHTS:
            raise UserError(f"--weight {part!r}: unknown indicator (have: {', '.join(DEFAULT_WEIGHTS)})")
        try:
            weights[code] = float(w)
        except ValueError:
            raise UserError(f"--weight {part!r}: expected CODE=NUMBER") from None

    async def run():
        repo = _repo(settings)
        try:
            return await CaseService(repo).evaluate(start, end, group_by=args.group_by, area_level=args.area_level,
                                                    weights=weights)
        finally:
            await repo.close()

    groups = asyncio.run(run())
    body = evaluation_json(groups, start, end, args.group_by)
    # One time convention with the web API: the period's bounds as ISO 8601 with the center's offset.
    body["start"], body["end"] = (t.replace(tzinfo=zone).isoformat() for t in (start, end))
    print(json.dumps(body, ensure_ascii=False, indent=2))
    return 0


def _password(args) -> str:
    import getpass
    import os

    password = args.password or os.environ.get("HOTLINE_PASSWORD") or ""
    if not password and sys.stdin.isatty():
        password = getpass.getpass("password: ")
    if len(password) < 8:
        raise UserError("a password of at least 8 characters is needed (--password, HOTLINE_PASSWORD "
                        "or typed at the prompt)")
    return password


async def _check_role_department(repo, role: str | None, department: str | None, *,
                                 need_department: bool = True) -> None:
    from case_core.domain.workflow import ROLE_LABELS

    if role is not None and role not in ROLE_LABELS:
        raise UserError(f"unknown role {role!r} (roles: {', '.join(ROLE_LABELS)})")
    if need_department and role == "department" and not department:
        raise UserError("a department user (role department, 处置部门) needs --department CODE: "
                        "without one they would see no case at all")
    if department:
        from case_core.service import load_reference

        known = (await load_reference(repo)).departments
        if known and department not in known:
            raise UserError(f"unknown department {department!r} (imported departments: "
                            f"{', '.join(sorted(known))}); `hotline import departments FILE` adds them")


def cmd_user_add(settings, args) -> int:
    """Create a user (audited as `user_created`: granting a role is a role change)."""
    from case_core.audit import AuditLog

    password = _password(args)

    async def run():
        repo = _repo(settings)
        try:
            if await repo.get_user(args.username) is not None:
                raise UserError(f"user {args.username!r} exists; change it with `hotline user set`")
            await _check_role_department(repo, args.role, args.department)
            now = _local_now(settings)
            user = await repo.create_user(username=args.username, password=password, role=args.role,
                                          display_name=args.name or "", department=args.department,
                                          now=now)
            await AuditLog(repo.engine).record(CLI_ACTOR, "user_created", user.username, "", {
                "role": user.role, "department": user.department}, now)
            return user
        finally:
            await repo.close()

    user = asyncio.run(run())
    print(f"user {user.username} ({user.role}{', department ' + user.department if user.department else ''}) created")
    return 0


def _local_now(settings) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(settings.ivr.timezone)).replace(tzinfo=None)


CLI_ACTOR = "cli"  # the audit log's actor for changes made with the `hotline` command


def cmd_user_set(settings, args) -> int:
    """Change a user; a new password or disabling revokes the user's sessions (audited)."""
    from case_core.adapters.auth_store import AuthStore
    from case_core.audit import AuditLog

    # `--password X` alone sets the password too (as `--new-password --password X`).
    password = _password(args) if (args.new_password or args.password) else None

    async def run():
        repo = _repo(settings)
        store, audit, now = AuthStore(repo.engine), AuditLog(repo.engine), _local_now(settings)
        try:
            await _check_role_department(repo, args.role, args.department, need_department=False)
            before = await repo.get_user(args.username)
            if before is None:
                return None
            # The user as they will be: a department user must keep a department.
            if (args.role or before.role) == "department" and not (
                    before.department if args.department is None else args.department):
                raise UserError(f"user {args.username!r} is a department user (处置部门): give --department CODE, "
                                "or change --role; without a department they would see no case at all")
            hashed = await store.hash_password(password) if password is not None else None
            user = await repo.update_user(args.username, role=args.role, display_name=args.name,
                                          department=args.department or None,
                                          clear_department=args.department == "")
            name = args.username
            if (user.role, user.department) != (before.role, before.department):
                await audit.record(CLI_ACTOR, "role_changed", name, "", {
                    "old": {"role": before.role, "department": before.department},
                    "new": {"role": user.role, "department": user.department}}, now)
            if hashed is not None:
                revoked = await store.set_password_hash(name, hashed, now)
                await audit.record(CLI_ACTOR, "password_changed", name, "", {"sessions_revoked": revoked}, now)
            if args.disable or args.enable:
                await store.set_disabled(name, bool(args.disable), now)
                await audit.record(CLI_ACTOR, "user_disabled" if args.disable else "user_enabled", name, "", {}, now)
            return user
        finally:
            store.executor.shutdown(wait=False)
            await repo.close()

    user = asyncio.run(run())
    if user is None:
        raise UserError(f"no user {args.username!r}")
    state = ", disabled (sessions revoked)" if args.disable else ", enabled" if args.enable else ""
    print(f"user {user.username}: role {user.role}, department {user.department or '-'}{state}")
    return 0


def cmd_user_sessions_revoke(settings, args) -> int:
    """End every live web session of the user at once (they must log in again)."""
    from case_core.adapters.auth_store import AuthStore
    from case_core.adapters.sqlalchemy_repo import NotFound
    from case_core.audit import AuditLog

    async def run() -> int:
        repo = _repo(settings)
        now = _local_now(settings)
        try:
            count = await AuthStore(repo.engine).revoke_user_sessions(args.username, now)
            await AuditLog(repo.engine).record(CLI_ACTOR, "session_revoked", args.username, "", {"count": count}, now)
            return count
        finally:
            await repo.close()

    try:
        count = asyncio.run(run())
    except NotFound:
        raise UserError(f"no user {args.username!r}") from None
    print(f"user {args.username}: {count} session(s) revoked")
    return 0


def cmd_user_list(settings, args) -> int:
    async def run():
        repo = _repo(settings)
        try:
            return await repo.list_users()
        finally:
            await repo.close()

    users = asyncio.run(run())
    if args.json:
        print(json.dumps([{"username": u.username, "name": u.display_name, "role": u.role,
                           "department": u.department, "disabled": u.disabled} for u in users],
                         ensure_ascii=False, indent=2))
    else:
        for u in users:
            state = "\tdisabled" if u.disabled else ""
            print(f"{u.username}\t{u.role}\t{u.department or '-'}\t{u.display_name}{state}")
    return 0


def register(sub, common) -> None:
    p = sub.add_parser("import", parents=[common], help="import reference data (categories, areas, routing…) from CSV")
    p.add_argument("kind", choices=KINDS, help="which table the CSV holds")
    p.add_argument("file", help="CSV file (UTF-8, header row); grid_cells also take a .geojson of polygons")
    p.add_argument("--local", action="store_true", help="categories: the city's local subclasses, on top of the national table")
    p.add_argument("--check", action="store_true", help="validate and report only; write nothing")
    p.add_argument("--skip-bad", action="store_true", help="import the valid rows even if some rows are bad "
                   "(each bad row is still listed as FILE:LINE: reason)")
    p.add_argument("--allow-shrink", action="store_true",
                   help="replace the table even when the file has less than half of its rows")
    p.add_argument("--crs", choices=("wgs84", "cgcs2000", "gcj02"), default="wgs84",
                   help="grid_cells .geojson: the file's coordinates (gcj02 is converted to WGS-84; "
                        "cgcs2000 is taken as WGS-84)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("evaluate", parents=[common], help="evaluation indicators (综合评价) for a period, as JSON")
    p.add_argument("--start", required=True, help="first day, YYYY-MM-DD (inclusive)")
    p.add_argument("--end", required=True, help="last day, YYYY-MM-DD (inclusive: the whole day counts)")
    p.add_argument("--group-by", choices=GROUP_BY, default=None, help="department, area, role or person")
    p.add_argument("--area-level", choices=("district", "street", "community", "grid"), default="street")
    p.add_argument("--weight", action="append", metavar="CODE=W", help="override a composite-score weight")
    p.set_defaults(func=cmd_evaluate)

    users = sub.add_parser("user", help="staff accounts (web login)").add_subparsers(dest="user_command", required=True)
    p = users.add_parser("add", parents=[common], help="create a user (password from --password, "
                         "HOTLINE_PASSWORD or a prompt)")
    p.add_argument("username")
    p.add_argument("--role", required=True, help="agent, shift_lead, dispatcher, department, inspector, "
                   "commander, supervisor or admin")
    p.add_argument("--name", help="display name (default: the username)")
    p.add_argument("--department", help="department code for department staff: they see and act on "
                   "that department's cases only")
    p.add_argument("--password")
    p.set_defaults(func=cmd_user_add)
    p = users.add_parser("set", parents=[common], help="change a user's role, name, department or password")
    p.add_argument("username")
    p.add_argument("--role")
    p.add_argument("--name")
    p.add_argument("--department", help='department code ("" = not tied to a department)')
    p.add_argument("--new-password", action="store_true", help="set a new password (as for add); "
                   "the user's web sessions are revoked")
    p.add_argument("--password", help="the new password (implies --new-password)")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--disable", action="store_true", help="refuse the user's logins and tokens, "
                       "revoke their sessions")
    state.add_argument("--enable", action="store_true", help="allow a disabled user again")
    p.set_defaults(func=cmd_user_set)
    sessions = users.add_parser("sessions", help="web sessions").add_subparsers(dest="sessions_command", required=True)
    p = sessions.add_parser("revoke", parents=[common], help="end every web session of the user now")
    p.add_argument("username")
    p.set_defaults(func=cmd_user_sessions_revoke)
    p = users.add_parser("list", parents=[common], help="list users")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_user_list)
