"""`hotline sms …`: check and show templates, list the outbox, opt numbers out/in, run the dispatcher.

    hotline sms template check [--dir DIR]     exit 2 and one `error:` line per problem
    hotline sms template show NAME             the text with sample values, its parts and encoding
    hotline sms list [--status S] [--case N] [--limit N]
    hotline sms opt-out NUMBER | opt-in NUMBER
    hotline sms dispatch [--once]              send due messages (until Ctrl-C, or one pass)
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from callcenter.notify.settings import load_notify_settings


def _now(settings) -> datetime:
    """Now as the center's naive local time ([ivr] timezone), as the tables store it."""
    return datetime.now(ZoneInfo(settings.ivr.timezone)).replace(tzinfo=None)


def _user_error(message: str):
    from case_core.errors import UserError

    return UserError(message)


def _engine(settings):
    from case_core.adapters import migrate
    from case_core.adapters.sqlalchemy_repo import make_engine, sync_url

    url = settings.database_url()
    migrate.upgrade(sync_url(url))
    return make_engine(url)


def _templates(settings, args):
    from callcenter.notify.templates import SmsTemplates

    notify = load_notify_settings(args.config)
    directory = Path(args.dir) if getattr(args, "dir", None) else notify.templates_path()
    return SmsTemplates(directory, max_parts=notify.max_parts), notify


def cmd_template_check(settings, args) -> int:
    templates, _ = _templates(settings, args)
    problems = templates.check()
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 2
    where = templates.override_dir or "shipped templates"
    print(f"sms templates ({where}): ok")
    return 0


def cmd_template_show(settings, args) -> int:
    from callcenter.notify.encoding import layout
    from callcenter.notify.templates import SAMPLE_CONTEXT, TemplateError

    templates, notify = _templates(settings, args)
    if args.name not in SAMPLE_CONTEXT:
        raise _user_error(f"unknown template {args.name!r} (known: {', '.join(SAMPLE_CONTEXT)})")
    context = {**SAMPLE_CONTEXT[args.name], "signature": notify.signature, "hotline": notify.hotline}
    try:
        text = templates.render(args.name, context)
    except TemplateError as exc:
        raise _user_error(str(exc)) from None
    lay = layout(text)
    print(text)
    print(f"-- {templates.path_of(args.name)}: {len(text)} characters, {lay.encoding}, {lay.count} SMS part(s)")
    return 0


def cmd_list(settings, args) -> int:
    from callcenter.notify import outbox

    if args.status and args.status not in outbox.STATUSES:
        raise _user_error(f"--status must be one of {', '.join(outbox.STATUSES)}")

    async def run():
        engine = _engine(settings)
        try:
            async with engine.connect() as conn:
                return await outbox.list_messages(conn, status=args.status, case_number=args.case, limit=args.limit)
        finally:
            await engine.dispose()

    for m in asyncio.run(run()):
        print(f"#{m.id}\t{m.status}\t{m.to_number}\t{m.case_number or '-'}\t{m.template}\t"
              f"tries={m.attempts}\t{m.last_error or ''}\t{m.text}")
    return 0


def _opt(settings, args, out: bool) -> int:
    from callcenter.notify import outbox

    async def run():
        engine = _engine(settings)
        try:
            async with engine.begin() as conn:
                if out:
                    return await outbox.opt_out(conn, args.number, now=_now(settings), source="cli")
                return await outbox.opt_in(conn, args.number)
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(run())
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    if out:
        print(f"{result}: opted out (退订); no more SMS")
    elif result:
        print(f"{args.number}: SMS allowed again")
    else:
        raise _user_error(f"{args.number} is not opted out")
    return 0


def cmd_opt_out(settings, args) -> int:
    return _opt(settings, args, True)


def cmd_opt_in(settings, args) -> int:
    return _opt(settings, args, False)


def cmd_dispatch(settings, args) -> int:
    from callcenter.notify.dispatcher import Dispatcher, make_driver

    notify = load_notify_settings(args.config)

    async def run():
        engine = _engine(settings)
        dispatcher = Dispatcher(engine, make_driver(notify), notify, clock=lambda: _now(settings))
        try:
            if args.once:
                report = await dispatcher.run_once()
                print(f"sent {report.sent}, retrying {report.retried}, failed {report.failed}, "
                      f"deferred {report.deferred}, suppressed {report.suppressed}"
                      f"{' (quiet hours: nothing sent)' if report.quiet else ''}")
            else:
                await dispatcher.start()
        finally:
            await dispatcher.stop()
            await engine.dispose()

    asyncio.run(run())
    return 0


def register(sub, common) -> None:
    sms = sub.add_parser("sms", help="SMS to reporters").add_subparsers(dest="sms_command", required=True)

    template = sms.add_parser("template", help="SMS templates").add_subparsers(dest="template_command", required=True)
    p = template.add_parser("check", parents=[common], help="check every template in use; exit 2 on errors")
    p.add_argument("--dir", help="check this templates folder instead of [sms] templates_dir")
    p.set_defaults(func=cmd_template_check)
    p = template.add_parser("show", parents=[common], help="render a template with sample values")
    p.add_argument("name")
    p.add_argument("--dir", help="templates folder instead of [sms] templates_dir")
    p.set_defaults(func=cmd_template_show)

    p = sms.add_parser("list", parents=[common], help="messages in the outbox, newest first")
    p.add_argument("--status")
    p.add_argument("--case", help="case number")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_list)

    p = sms.add_parser("opt-out", parents=[common], help="stop SMS to a number (退订)")
    p.add_argument("number")
    p.set_defaults(func=cmd_opt_out)
    p = sms.add_parser("opt-in", parents=[common], help="allow SMS to an opted-out number again")
    p.add_argument("number")
    p.set_defaults(func=cmd_opt_in)

    p = sms.add_parser("dispatch", parents=[common], help="send due messages through the configured driver")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.set_defaults(func=cmd_dispatch)
