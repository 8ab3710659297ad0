"""The `hotline` command: serve, database, demo data, prompts, tokens, flows.

Every subcommand accepts `--config FILE`. Errors a user can fix (bad config, missing prompts,
unknown user) are printed as one line starting with `error:` and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from callcenter import config as config_mod
from callcenter.features import import_optional
from case_core.errors import UserError

DEMO_PASSWORD = "hotline12319"
# (username, role, display name); department staff are bound to a department of the demo
# data (case_core/demo_data/city_departments.csv): `DEMO_DEPARTMENTS`.
DEMO_USERS = [
    ("admin", "admin", "系统管理员"),
    ("agent1", "agent", "受理员一"),
    ("agent2", "agent", "受理员二"),
    ("shiftlead1", "shift_lead", "值班长"),
    ("dispatcher1", "dispatcher", "派遣员"),
    ("dept1", "department", "市政养护处"),
    ("inspector1", "inspector", "监督员一"),
    ("commander1", "commander", "指挥长"),
    ("supervisor1", "supervisor", "班长"),
]


DEMO_DEPARTMENTS = {"dept1": "municipal"}  # 市政设施养护中心

DEMO_AGENTS = [("agent1", "1001"), ("agent2", "1002"), ("supervisor1", "1900")]

# Modules that contribute subcommands (skipped while a feature is not installed).
COMMAND_MODULES = (
    "case_core.commands",      # hotline import …, hotline evaluate …
    "callcenter.stt.commands",  # hotline stt transcribe, hotline extract
    "callcenter.extract_commands",  # hotline extract train (after the stt module's extract)
    "callcenter.acd.commands",  # queues and agents
    "callcenter.notify.commands",  # SMS
    "callcenter.sip_commands",  # SIP accounts for agents' phones, trunks
    "callcenter.backup",  # hotline backup FILE, hotline restore FILE
    "callcenter.cluster.commands",  # hotline cluster list/drain/resume
)


def _now(settings) -> datetime:
    return datetime.now(ZoneInfo(settings.ivr.timezone)).replace(tzinfo=None)


def _repo(settings):
    from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine

    return SqlRepository(make_engine(settings.database_url()))


def cmd_serve(settings, args) -> int:
    from callcenter.bootstrap import install_reactor, serve

    install_reactor()
    from twisted.internet import reactor

    stop_once_on_signals(reactor)
    return serve(settings)


def stop_once_on_signals(reactor) -> None:
    """Ctrl-C or SIGTERM stops the hotline (calls hung up, recordings closed, writes flushed); another
    one while it stops is logged and ignored, not Twisted's `ReactorNotRunning` traceback. Twisted
    installs `reactor.sigInt`/`sigTerm`/`sigBreak` when the reactor starts, so these replace its own."""
    from twisted.internet.error import ReactorNotRunning

    log = logging.getLogger("hotline")

    def stop() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            log.info("already stopping")

    def on_signal(number: int, frame=None) -> None:
        log.info("signal %d: stopping (calls are hung up, recordings closed)", number)
        reactor.callFromThread(stop)

    reactor.sigInt = reactor.sigTerm = reactor.sigBreak = on_signal


def cmd_db_upgrade(settings, args) -> int:
    from case_core.adapters import migrate
    from case_core.adapters.sqlalchemy_repo import sync_url

    url = sync_url(settings.database_url())
    migrate.upgrade(url)
    print(f"database at revision {', '.join(migrate.current(url))}")
    return 0


def cmd_demo_seed(settings, args) -> int:
    from case_core.adapters import migrate
    from case_core.adapters.sqlalchemy_repo import sync_url
    from case_core.service import CaseService

    migrate.upgrade(sync_url(settings.database_url()))

    async def seed() -> None:
        repo = _repo(settings)
        try:
            now = _now(settings)
            for username, role, name in DEMO_USERS:
                user = await repo.create_user(
                    username=username, password=DEMO_PASSWORD, role=role, display_name=name, now=now,
                    department=DEMO_DEPARTMENTS.get(username),
                )
                if user.role == "department" and not user.department and username in DEMO_DEPARTMENTS:
                    # Seeded before department users needed one (they would see no case): bind it.
                    await repo.update_user(username, department=DEMO_DEPARTMENTS[username])
            await _seed_demo_agents(settings, repo, now)
            if args.city:
                await _seed_demo_city(repo, now)
            elif await repo.count_cases() == 0:
                service = CaseService(repo)
                for phone, text in (
                    ("13800138001", "人民路与解放路交叉口东北角雨水井盖破损，有行人绊倒风险。"),
                    ("13900139002", "幸福小区南门外路灯连续三晚不亮。"),
                ):
                    await service.file_report(
                        channel="12319",
                        reporter_phone=phone,
                        call_id=None,
                        recording_ids=(),
                        variables={},
                        now=now,
                        description=text,
                    )
        finally:
            await repo.close()

    asyncio.run(seed())
    print(f"demo users: {', '.join(u for u, _, _ in DEMO_USERS)} (password: {DEMO_PASSWORD})")
    agents = ", ".join(f"{u} → sip:{ext}@{settings.sip.host}:{settings.sip.port}" for u, ext in DEMO_AGENTS)
    print(f"demo agent phones (SIP password {DEMO_PASSWORD}): {agents}")
    return 0


async def _seed_demo_city(repo, now) -> None:
    from callcenter.demo_calls import seed_calls
    from case_core.demo_city import seed_city

    started = time.monotonic()
    added = await seed_city(repo, now=now, password=DEMO_PASSWORD)
    calls = 0 if added["kept"] else await seed_calls(repo.engine, now)
    print(f"demo city: {added['reference_tables']} reference tables, {added['users']} users, {added['cases']} cases, "
          f"{added['actions']} workflow actions, {calls} calls added ({time.monotonic() - started:.1f} s)")
    if added["kept"]:
        print(f"demo city: not added — this database has its own {', '.join(added['kept'])} (never replaced)")


async def _seed_demo_agents(settings, repo, now) -> None:
    """Agents with extensions and SIP accounts, so a softphone can register and take queue calls."""
    from callcenter.acd_store import AcdStore
    from callcenter.sip_store import AccountError, SipAccountStore

    store = AcdStore(repo.engine)
    accounts = SipAccountStore(repo.engine)
    have = {a.extension for a in await accounts.list()}
    for username, extension in DEMO_AGENTS:
        await store.set_profile(username, extension, {"report": 2, "consult": 1}, now)
        if extension not in have:
            try:
                await accounts.add(extension, DEMO_PASSWORD, realm=settings.sip.realm, now=now, display_name=username)
            except AccountError as exc:
                raise UserError(str(exc)) from None


def cmd_token_create(settings, args) -> int:
    """Print a new token (stdout, alone, for scripts); its id, scope and expiry go to stderr."""
    from datetime import timedelta

    from case_core.adapters.auth_store import AuthStore
    from case_core.adapters.sqlalchemy_repo import NotFound
    from case_core.audit import AuditLog

    days = args.days if args.days is not None else settings.web.token_days
    if not 0 < days <= 3650:
        raise UserError(f"--days must be between 1 and 3650, got {days}")

    async def create() -> tuple[int, str, datetime]:
        repo = _repo(settings)
        now = _now(settings)
        expires = now + timedelta(days=days)
        try:
            token_id, token = await AuthStore(repo.engine).create_token(args.user, now, scope=args.scope,
                                                                         expires_at=expires)
            await AuditLog(repo.engine).record("cli", "token_created", args.user, "", {
                "id": token_id, "scope": args.scope, "expires_at": expires.isoformat(timespec="seconds")}, now)
            return token_id, token, expires
        finally:
            await repo.close()

    try:
        token_id, token, expires = asyncio.run(create())
    except NotFound as exc:
        raise UserError(f"{exc}; create the account first: hotline user add {args.user} --role ROLE") from None
    print(token)
    print(f"token {token_id} for {args.user}: scope {args.scope}, expires {expires:%Y-%m-%d %H:%M}", file=sys.stderr)
    return 0


def cmd_token_revoke(settings, args) -> int:
    from case_core.adapters.auth_store import AuthStore
    from case_core.audit import AuditLog

    if sum(x is not None for x in (args.token, args.id, args.user)) != 1:
        raise UserError("give exactly one of TOKEN, --id N or --user NAME")

    async def revoke() -> list[int]:
        repo = _repo(settings)
        now = _now(settings)
        try:
            ids = await AuthStore(repo.engine).revoke_tokens(now, token=args.token, token_id=args.id,
                                                              username=args.user)
            if ids:
                await AuditLog(repo.engine).record("cli", "token_revoked", args.user or "", "", {"ids": ids}, now)
            return ids
        finally:
            await repo.close()

    ids = asyncio.run(revoke())
    if not ids:
        raise UserError("no such token that is not revoked already")
    print(f"{len(ids)} token(s) revoked: {', '.join(map(str, ids))}")
    return 0


def cmd_token_list(settings, args) -> int:
    from case_core.adapters.auth_store import AuthStore

    async def listing():
        repo = _repo(settings)
        try:
            return await AuthStore(repo.engine).list_tokens(args.user)
        finally:
            await repo.close()

    tokens = asyncio.run(listing())
    if args.json:
        zone = ZoneInfo(settings.ivr.timezone)

        def when(value):  # stored naive local times, written as the web API writes them
            return value.replace(tzinfo=zone).isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)

        print(json.dumps([t.as_json() for t in tokens], ensure_ascii=False, indent=2, default=when))
        return 0
    now = _now(settings)
    for t in tokens:
        state = ("revoked" if t.revoked_at else "expired" if t.expires_at and t.expires_at <= now else "valid")
        expires = f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "never"
        print(f"{t.id}\t{t.username}\t{t.scope}\t{expires}\t{state}")
    return 0


def cmd_prompts_build(settings, args) -> int:
    from ivr_flows.prompts_build import build_prompts, default_manifest_path

    out = settings.path(settings.prompts.dir)
    override = settings.path(settings.prompts.override_dir) if settings.prompts.override_dir else None
    started = time.monotonic()
    built = build_prompts(default_manifest_path(), out, override_dir=override, force=args.force,
                          engine=settings.prompts.engine, center_name=settings.center.name)
    engine = (out / ".engine").read_text(encoding="utf-8").strip() if (out / ".engine").is_file() else "?"
    print(f"{len(built)} prompts in {out} ({time.monotonic() - started:.1f} s, engine {engine})")
    return 0


def _flows_dir(settings):
    from ivr_flows.loader import default_flows_dir

    return settings.path(settings.ivr.flows_dir) if settings.ivr.flows_dir else default_flows_dir()


def cmd_flows_check(settings, args) -> int:
    from ivr_flows.graph import check_all

    errors = check_all(_flows_dir(settings))
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    if errors:
        return 2
    print(f"flows in {_flows_dir(settings)}: ok")
    return 0


def cmd_flows_show(settings, args) -> int:
    from ivr_flows.graph import render_graph
    from ivr_flows.loader import load_flows

    flows = load_flows(_flows_dir(settings))
    flow = flows.get(args.name) or next((f for f in flows.values() if getattr(f, "did", None) == args.name), None)
    if flow is None:
        raise UserError(f"no flow named {args.name!r} (have: {', '.join(sorted(flows))})")
    print(render_graph(flow))
    return 0


def cmd_recordings_purge(settings, args) -> int:
    from callcenter.retention import cutoff, purge_recordings

    days = args.older_than if args.older_than is not None else settings.storage.retention_days
    if days <= 0:
        raise UserError("nothing to do: give --older-than DAYS or set [storage] retention_days")

    async def purge():
        repo = _repo(settings)
        try:
            return await purge_recordings(
                repo.engine, settings.path(settings.storage.dir), older_than=cutoff(_now(settings), days),
                dry_run=args.dry_run,
            )
        finally:
            await repo.close()

    report = asyncio.run(purge())
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {report.files} recording(s), {report.bytes / 1e6:.1f} MB, older than {days} days"
          f"{f'; {report.missing} already gone' if report.missing else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML configuration file (default: built-in defaults)")
    common.add_argument("-v", "--verbose", action="store_true", help="log debug messages")

    parser = argparse.ArgumentParser(prog="hotline", description="12319/96310 城管热线 — hotline and call center")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="run the hotline (SIP, media, web)")
    p.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", parents=[common], help="migrate the database to the latest schema")
    p.set_defaults(func=cmd_db_upgrade)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="demo_command", required=True)
    p = demo.add_parser("seed", parents=[common], help="create demo users (admin…) and sample cases")
    p.add_argument("--city", action="store_true", help="the demo city instead of two sample cases: reference "
                   "data, its staff and 90 days of cases in every state")
    p.set_defaults(func=cmd_demo_seed)

    prompts = sub.add_parser("prompts", help="IVR prompts").add_subparsers(dest="prompts_command", required=True)
    p = prompts.add_parser("build", parents=[common], help="generate the Mandarin prompt WAVs")
    p.add_argument("--force", action="store_true", help="rebuild prompts that are up to date")
    p.set_defaults(func=cmd_prompts_build)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    p = token.add_parser("create", parents=[common], help="print a new bearer token for USER")
    p.add_argument("user")
    p.add_argument("--scope", choices=("read", "write", "admin"), default="write",
                   help="read: GET only; write (default): what USER's role may do except admin-only "
                        "routes; admin: all USER's role may do")
    p.add_argument("--days", type=int, help="valid for this many days (default [web] token_days, 90)")
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser("revoke", parents=[common], help="revoke a token (its text, --id or all of --user)")
    p.add_argument("token", nargs="?")
    p.add_argument("--id", type=int)
    p.add_argument("--user")
    p.set_defaults(func=cmd_token_revoke)
    p = token.add_parser("list", parents=[common], help="tokens with user, scope, expiry and state")
    p.add_argument("--user")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_token_list)

    flows = sub.add_parser("flows", help="IVR flows").add_subparsers(dest="flows_command", required=True)
    p = flows.add_parser("check", parents=[common], help="validate every flow file")
    p.set_defaults(func=cmd_flows_check)
    p = flows.add_parser("show", parents=[common], help="print a flow's graph")
    p.add_argument("name")
    p.set_defaults(func=cmd_flows_show)

    recs = sub.add_parser("recordings", help="call recordings").add_subparsers(dest="recordings_command", required=True)
    p = recs.add_parser("purge", parents=[common], help="delete recordings older than the retention period")
    p.add_argument("--older-than", type=int, metavar="DAYS", help="default: [storage] retention_days")
    p.add_argument("--dry-run", action="store_true", help="only report what would be deleted")
    p.set_defaults(func=cmd_recordings_purge)

    # Feature folders add their own subcommands: each module has register(sub, common).
    for module_name in COMMAND_MODULES:
        module = import_optional(module_name)
        if module is not None:
            module.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = config_mod.load(args.config)
        return args.func(settings, args) or 0
    except (config_mod.ConfigError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `hotline user list --json | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a user-facing tool: one clear line, details with -v
        from callcenter.bootstrap import StartupError

        if isinstance(exc, StartupError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.verbose:
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # Run the module's canonical copy (not a second copy under __main__), so the command
    # modules it imports see one module state.
    from callcenter.cli import main as _main

    sys.exit(_main())
