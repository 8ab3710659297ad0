"""`hotline sip …`: SIP accounts for agents' phones (add, list, remove).

The hotline picks up changes while it runs (its credential cache reloads every few seconds).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo


def _store(settings):
    import logging

    from callcenter.sip_store import SipAccountStore
    from case_core.adapters import migrate
    from case_core.adapters.sqlalchemy_repo import make_engine, sync_url

    logging.getLogger("alembic").setLevel(logging.WARNING)
    url = settings.database_url()
    migrate.upgrade(sync_url(url))
    return SipAccountStore(make_engine(url))


def _run(settings, work):
    async def go():
        store = _store(settings)
        try:
            return await work(store)
        finally:
            await store.engine.dispose()

    return asyncio.run(go())


def cmd_account_add(settings, args) -> int:
    from case_core.errors import UserError
    from callcenter.sip_store import AccountError, generate_password

    if args.extension in settings.sip.dids:
        raise UserError(f"extension {args.extension} is a hotline number (sip.dids); pick another")
    password = args.password if args.password is not None else generate_password()
    now = datetime.now(ZoneInfo(settings.ivr.timezone)).replace(tzinfo=None)
    try:
        _run(settings, lambda store: store.add(
            args.extension, password, realm=settings.sip.realm, now=now, display_name=args.name or ""))
    except AccountError as exc:
        raise UserError(str(exc)) from None
    print(f"SIP account {args.extension} (realm {settings.sip.realm})")
    if args.password is None:
        print(f"password: {password}")
    return 0


def cmd_account_list(settings, args) -> int:
    accounts = _run(settings, lambda store: store.list())
    if not accounts:
        print("no SIP accounts (add one with `hotline sip account add EXT`)")
        return 0
    for a in accounts:
        state = "enabled" if a.enabled else "disabled"
        note = "" if a.realm == settings.sip.realm else f"  (realm {a.realm}: cannot register, add again)"
        print(f"{a.extension}\t{a.display_name or '-'}\t{state}\t{a.created_at:%Y-%m-%d %H:%M}{note}")
    return 0


def cmd_account_remove(settings, args) -> int:
    from case_core.errors import UserError

    if not _run(settings, lambda store: store.remove(args.extension)):
        raise UserError(f"no SIP account {args.extension} (see `hotline sip account list`)")
    print(f"SIP account {args.extension} removed")
    return 0


def register(sub, common) -> None:
    sip = sub.add_parser("sip", help="SIP accounts of agents' phones").add_subparsers(
        dest="sip_command", required=True)
    account = sip.add_parser("account", help="SIP accounts (extension + digest password)").add_subparsers(
        dest="account_command", required=True)

    p = account.add_parser("add", parents=[common], help="create an account; prints a generated password")
    p.add_argument("extension", metavar="EXT")
    p.add_argument("--password", metavar="P", help="the password (default: generate one and print it)")
    p.add_argument("--name", metavar="N", help="display name, e.g. the agent's name")
    p.set_defaults(func=cmd_account_add)

    p = account.add_parser("list", parents=[common], help="list accounts (never passwords)")
    p.set_defaults(func=cmd_account_list)

    p = account.add_parser("remove", parents=[common], help="delete an account")
    p.add_argument("extension", metavar="EXT")
    p.set_defaults(func=cmd_account_remove)
