"""Wires the whole hotline into one process: Twisted on the asyncio reactor with aiohttp beside it.

`install_reactor()` must run before anything imports `twisted.internet.reactor`.
`Hotline.start()` binds SIP, RTP and web; `Hotline.stop()` hangs up calls, flushes recordings
and closes the database.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from callcenter.config import Settings

log = logging.getLogger("hotline")

# How long another thread may keep the GIL while the event loop waits for it (see serve()).
SWITCH_INTERVAL_S = 0.0005

# How often the registrar's credential cache reloads SIP accounts (CLI changes, other nodes).
ACCOUNTS_REFRESH_S = 3.0



def install_web_stores(app, engine, sms=None) -> None:
    """Hand the web app the call center's stores behind its ports (`web.ports`): the queue
    log (wallboard charts, queue-log CSV), the transcripts and the SMS side (`sms`: the
    `[sms]` settings, defaults when None). Tests that build the web app call this too."""
    from callcenter.acd_store import QueueLog
    from callcenter.notify.settings import NotifySettings
    from callcenter.notify.web_service import SmsWebService
    from callcenter.stt.store import TranscriptStore
    from web.ports import QUEUE_LOG, SMS, TRANSCRIPTS

    app[QUEUE_LOG] = QueueLog(engine)
    app[TRANSCRIPTS] = TranscriptStore(engine)
    app[SMS] = SmsWebService(engine, sms if sms is not None else NotifySettings())


class StartupError(RuntimeError):
    """The hotline cannot start; the message says why and what to do."""


def install_reactor() -> asyncio.AbstractEventLoop:
    """Install Twisted's asyncio reactor on a fresh loop (idempotent)."""
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        return reactor._asyncioEventloop  # type: ignore[attr-defined]
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    return loop


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def load_flows_for(settings: Settings) -> tuple[dict[str, object], dict[str, object]]:
    """The IVR flows by DID (each configured DID must have one) and by name."""
    from ivr_flows.loader import FlowError, default_flows_dir, load_flows

    directory = settings.path(settings.ivr.flows_dir) if settings.ivr.flows_dir else default_flows_dir()
    try:
        flows = load_flows(directory)
    except FlowError as exc:
        raise StartupError(f"IVR flow error: {exc}") from None
    by_did: dict[str, object] = {}
    for flow in flows.values():
        did = getattr(flow, "did", None)
        if did and did in settings.sip.dids:
            by_did[did] = flow
    missing = [d for d in settings.sip.dids if d not in by_did]
    if missing:
        raise StartupError(
            f"sip.dids: no IVR flow in {directory} answers {', '.join(missing)} (a flow file needs `did: {missing[0]}`)"
        )
    return by_did, dict(flows)


def admission_policy(settings: Settings, lookup):
    """The call admission rules as configured: public DIDs, trunks' allow lists, the 407
    check against the SIP accounts (`lookup` is the registrar's HA1 lookup) and the limits."""
    from callcenter.admission import AdmissionPolicy, InviteAuth, Limits, TrunkSource, parse_allow

    a = settings.admission
    trunks = tuple(TrunkSource(t.name, tuple(parse_allow(x) for x in t.allow), t.dids)
                   for t in settings.trunks if t.allow)
    if settings.cluster.proxy:  # the Kamailio in front of a cluster brings the public DIDs
        trunks += (TrunkSource("cluster-proxy", (parse_allow(settings.cluster.proxy),)),)
    auth = InviteAuth(realm=settings.sip.realm, lookup=lookup, algorithms=settings.sip.digest_algorithms)
    return AdmissionPolicy(
        public_dids=settings.sip.dids, trunks=trunks, auth=auth,
        limits=Limits(a.max_calls, a.max_calls_per_source, a.retry_after_s),
        ack_timeout_s=a.ack_timeout_s, first_rtp_timeout_s=a.first_rtp_timeout_s,
        max_write_backlog=a.max_write_backlog)


def make_defence(s: Settings):
    """The SIP port's defence with the limits of `[sip]`; the trunks' allow sources are never banned."""
    from callcenter.sip.defence import Defence, DefencePolicy, allow_network

    sip = s.sip
    allow = tuple(sip.allow) + tuple(allow_network(a) for t in s.trunks for a in t.allow)
    if s.cluster.proxy:
        allow += (allow_network(s.cluster.proxy),)
    return Defence(DefencePolicy(flood_window_s=sip.flood_window_s, flood_max_requests=sip.flood_max_requests,
                         auth_max_failures=sip.auth_max_failures, auth_window_s=sip.auth_window_s,
                         ban_s=sip.ban_s, drop_scanners=sip.drop_scanners, allow=allow))


@dataclass
class Addresses:
    sip: str
    web: str


class Hotline:
    def __init__(self, settings: Settings, reactor):
        self.settings = settings
        self.reactor = reactor
        self.tz = ZoneInfo(settings.ivr.timezone)
        from callcenter.cpus import background_thread

        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recordings",
                                           initializer=background_thread)
        self._web_runner = None
        self._sip_port = None
        self._sip_stream_ports: list = []  # TCP and TLS listeners
        self.repo = None
        self.audit = None  # case_core.audit.AuditLog, set with the repository
        self.router = None
        self.rtp = None
        self.sip = None
        self._tasks: set[asyncio.Future] = set()
        self.acd = None
        self.sms_dispatcher = None
        self.followups = None
        self._retention = None
        self.transcription = None
        self.live_stt = None
        self.cpu_plan = None
        self._media_yield = None
        self.gc_pacer = None
        self.trunk_registrations: dict = {}
        # Side effects stored in the same transaction as a case change (SMS, follow-up calls).
        self._change_hooks: list = []
        self.registrar = None
        self.credentials = None
        self._accounts_refresher: asyncio.Task | None = None
        self.metrics = None  # callcenter.metrics.HotlineMetrics behind GET /metrics
        self.writer = None  # callcenter.write_queue.WriteQueue: call, recording and queue-event rows
        self.cluster = None  # callcenter.cluster.pg_node.ClusterNode ([cluster] node_id)
        self.proxy_bindings = None  # agents' phones registered at the Kamailio in front ([cluster] proxy)
        self.cluster_events = None  # callcenter.cluster.pg_events.ClusterEvents: LISTEN/NOTIFY fan-out

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.reactor.seconds(), self.tz).replace(tzinfo=None)

    def _spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task failed", exc_info=t.exception())

        task.add_done_callback(done)
        return task

    def _call_variables(self, call) -> dict:
        from case_core.domain.calendar import WorkCalendar

        now = self.now_dt()
        open_h, open_m = (int(x) for x in self.settings.ivr.open.split(":"))
        close_h, close_m = (int(x) for x in self.settings.ivr.close.split(":"))
        minutes = now.hour * 60 + now.minute
        workday = self.settings.ivr.open_days == "everyday" or WorkCalendar().is_workday(now.date())
        in_hours = open_h * 60 + open_m <= minutes < close_h * 60 + close_m
        return {"business_hours": bool(workday and in_hours), "is_holiday": not workday}

    async def start(self) -> Addresses:
        from aiohttp import web

        from callcenter.calls import CallRouter
        from callcenter.write_queue import QueuedCallServices
        from callcenter.dialplan import DialPlan
        from callcenter.prompts import PromptLibrary
        from callcenter.sip.registrar import Registrar
        from callcenter.sip.ua import UserAgent
        from callcenter.sip_store import CredentialCache, SipAccountStore
        from callcenter.twisted_rtp import RtpEngine
        from callcenter.twisted_sip import SipEndpoint
        from case_core.adapters import migrate
        from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
        from case_core.service import CaseService
        from web.app import WebContext, create_app
        from web.auth import load_or_create_secret

        s = self.settings
        url = s.database_url()
        await asyncio.get_running_loop().run_in_executor(None, migrate.upgrade, sync_url(url))
        self.repo = SqlRepository(make_engine(url))
        from callcenter.write_queue import WriteQueue

        # One writer for call, recording and queue-event rows: nothing lost when the pool is busy.
        from case_core.adapters.sqlalchemy_repo import make_sync_engine

        self.writer = WriteQueue(make_sync_engine(url))
        self.writer.start()
        from case_core.audit import AuditLog

        self.audit = AuditLog(self.repo.engine, self.tz)  # case_core.audit: web logins, SIP bans, listen-in …

        flows, flows_by_name = load_flows_for(s)
        prompts = PromptLibrary(
            s.path(s.prompts.dir), s.path(s.prompts.override_dir) if s.prompts.override_dir else None
        )
        needed = set()
        for flow in flows_by_name.values():
            needed |= set(flow.prompt_names())
        needed.add("beep")
        missing = prompts.missing(needed)
        if missing:
            raise StartupError(
                f"prompts missing in {prompts.directory}: {', '.join(missing[:8])}"
                f"{' …' if len(missing) > 8 else ''}; run `hotline prompts build`"
            )

        hub_holder: dict = {}

        def on_event(kind: str, data: dict) -> None:
            hub = hub_holder.get("hub")
            if hub is not None:
                hub.publish(kind, data)
            if kind == "transcript_ready" and data.get("kind") == "message" and data.get("case_id"):
                self._spawn(service.describe_from_transcript(data["case_id"], data.get("text") or "", self.now_dt()))
            elif kind == "case_created" and self.transcription is not None:
                # The message may have been transcribed before its case existed.
                self._spawn(self.transcription.describe_new_case(service, data["id"], self.now_dt()))

        service = CaseService(self.repo, on_event=on_event)
        self.repo.change_hook = self._run_change_hooks
        self._start_sms()
        await self._start_transcription(service, on_event)
        if url.startswith("sqlite") or s.cluster.node_id:
            # On a shared database a cluster node closes only its own calls (issue 17).
            from callcenter.media.wav import wav_seconds
            from case_core.adapters.recovery import recover_interrupted_calls

            await recover_interrupted_calls(self.repo.engine, service, self.now_dt(), wav_seconds,
                                            node_id=s.cluster.node_id or None)
        public_host = s.sip.public_host or s.sip.host
        self.credentials = CredentialCache(s.sip.realm)
        accounts = SipAccountStore(self.repo.engine, self.credentials)
        await accounts.refresh()
        log.info("%d SIP account(s) can register in realm %r", len(self.credentials.extensions()), s.sip.realm)
        self.registrar = Registrar(realm=s.sip.realm, lookup=self.credentials.lookup,
                                   algorithms=s.sip.digest_algorithms,
                                   require_qop=s.sip.digest_qop_required)
        self._accounts_refresher = asyncio.ensure_future(self._refresh_accounts(accounts))
        registrar = self.registrar
        if s.cluster.proxy:
            from callcenter.cluster.pg_node import ClusterRegistrar, KamailioBindings

            self.proxy_bindings = KamailioBindings(s.cluster.proxy)  # agents' phones registered at Kamailio
            registrar = ClusterRegistrar(self.registrar, self.proxy_bindings)
        ua = UserAgent(local_host=public_host, local_port=s.sip.port, registrar=registrar)
        self.sip = SipEndpoint(ua, self.reactor)
        self.sip.defence = make_defence(s)
        self.sip.on_defence = self._defence_event
        self.rtp = RtpEngine(self.reactor, host=s.rtp.host, port_min=s.rtp.port_min, port_max=s.rtp.port_max)
        storage = s.path(s.storage.dir)
        storage.mkdir(parents=True, exist_ok=True)
        self.router = CallRouter(
            sip=self.sip,
            rtp=self.rtp,
            flows_by_did=flows,
            prompts=prompts,
            services=QueuedCallServices(service, self.writer, node_id=s.cluster.node_id or None),
            clock=self.reactor,
            spawn=self._spawn,
            sleep=asyncio.sleep,
            executor=self.executor,
            storage_dir=storage,
            rtp_host=s.rtp.host,
            now_dt=self.now_dt,
            call_variables=self._call_variables,
            rtp_timeout_s=s.rtp.timeout_s,
            ring_s=s.sip.ring_s,
            trunks=s.trunks,
            callback_from=s.acd.callback_from,
            flows_by_name=flows_by_name,
            live_stt=self.live_stt,
            publish=lambda kind, data, to_user=None: hub_holder["hub"].publish(kind, data, to_user=to_user)
            if hub_holder.get("hub") else None,
            outbound_ring_s=s.followup.ring_timeout_s,
            admission=admission_policy(s, self.credentials.lookup),
            dialplan=DialPlan(s.dialplan.allow, s.dialplan.deny),
        )
        self.sip.listener = self.router
        self.router.on_digest_failed = self.sip.digest_failed  # 407 failures count towards bans
        self.router.write_backlog = self.writer.backlog
        self._start_media_yield()
        desk = await self._start_acd(hub_holder)
        await self._start_followups(service)
        self._preload_suggestions()
        self._start_metrics()
        if s.storage.retention_days > 0:
            self._retention = asyncio.ensure_future(self._purge_daily())
        from twisted.internet.error import CannotListenError

        self._listen_sip(s, CannotListenError)
        sip_port = self._sip_port.getHost().port
        ua.local_port = sip_port
        self._register_trunks(ua, public_host, sip_port)

        secret = load_or_create_secret(
            (sqlite_path(url).parent if sqlite_path(url) else s.path("var")) / "web-secret.key"
        )
        from web import timefmt

        timefmt.configure(self.tz)  # JSON/CSV times carry [ivr] timezone's offset
        from web.auth import AuthSettings

        from callcenter.cpus import background_thread
        from case_core.adapters.auth_store import AuthStore

        ctx = WebContext(repo=self.repo, service=service, secret=secret, now=self.reactor.seconds, audit=self.audit,
                         auth_settings=AuthSettings.from_web(s.web),
                         auth_store=AuthStore(self.repo.engine, thread_initializer=background_thread))
        hub_holder["hub"] = ctx.hub
        if s.cluster.node_id:  # live events (screen pops, changes) reach every node's browsers
            from callcenter.cluster.pg_events import ClusterEvents, fan_out

            self.cluster_events = ClusterEvents("postgresql://" + url.split("://", 1)[1], s.cluster.node_id,
                                                ctx.hub.publish)
            fan_out(ctx.hub, self.cluster_events)
            await self.cluster_events.start()
        ctx.desk = desk
        ctx.followups = self.followups
        ctx.trunks = self.trunk_registrations
        ctx.center_name = s.center.name
        ctx.map_settings = s.map
        from web import field as web_field  # not `import web.field`: that rebinds `web` (aiohttp) here

        web_field.POSITION_INTERVAL_S = s.inspectors.position_interval_s
        app = create_app(ctx)
        install_web_stores(app, self.repo.engine, sms=s.sms)
        from web.transcripts import STT_STATUS, TRANSCRIPTION

        from web.open311 import OPEN311

        app[OPEN311] = s.open311
        if self.metrics is not None:
            from web import metrics as metrics_route

            metrics_route.setup(app, self.metrics, token=s.metrics.token)
        from case_core.photos import PhotoFiles, PhotoService
        from web.photos import PHOTOS

        from web.wallboard import WALLBOARD_SETTINGS

        app[WALLBOARD_SETTINGS] = s.wallboard
        app[PHOTOS] = PhotoService(PhotoFiles(s.path(s.storage.dir) / "photos", s.storage.photo_max_mb * 1024 * 1024),
                                   self.repo.engine)
        if self.transcription is not None:
            app[TRANSCRIPTION] = self.transcription
            app[STT_STATUS] = self.stt_status
        from web.sip_admin import SIP_ENDPOINT

        app[SIP_ENDPOINT] = self.sip  # GET/DELETE /api/sip/bans
        from web.cluster_api import CLUSTER

        app[CLUSTER] = self._make_cluster_node()  # GET /api/cluster, drain/resume
        self._web_runner = web.AppRunner(app, access_log=None)
        await self._web_runner.setup()
        site = web.TCPSite(self._web_runner, s.web.host, s.web.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"web.port: cannot listen on {s.web.host}:{s.web.port} ({exc.strerror})") from None
        web_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ctx.sip_address = f"sip:12319@{public_host}:{sip_port}"
        if s.cluster.node_id:
            self.cluster.sip = f"{public_host}:{sip_port}"
            self.cluster.web = f"http://{s.web.host}:{web_port}/"
            await self.cluster.join()
            self.cluster.start()
        return Addresses(sip=ctx.sip_address, web=f"http://{s.web.host}:{web_port}/")

    def _listen_sip(self, s, CannotListenError) -> None:
        """Bind SIP over UDP, TCP on the same port number (`[sip] tcp`) and TLS (`tls_cert`)."""
        import os

        from callcenter.media.srtp import SdesCalls
        from callcenter.twisted_sip import SipStreamFactory, tls_context

        self.sip.sdes = SdesCalls(s.sip.srtp, os.urandom)  # SRTP keys on TLS legs
        self.sip.rtp_leg = self.rtp.legs.get
        limits = dict(idle_s=s.sip.stream_idle_s, first_message_s=s.sip.stream_first_message_s,
                      max_per_source=s.sip.stream_max_per_source,
                      max_connections=s.sip.stream_max_connections)
        # With port 0 the kernel picks the UDP port; TCP wants the same number, which is
        # almost always free too — else try another pick.
        for attempt in range(8 if s.sip.port == 0 and s.sip.tcp else 1):
            try:
                self._sip_port = self.reactor.listenUDP(s.sip.port, self.sip, interface=s.sip.host)
            except CannotListenError as exc:
                raise StartupError(f"sip.port: cannot listen on {s.sip.host}:{s.sip.port} ({exc.socketError})") from None
            # Read whole datagrams: Twisted's default of 8192 bytes would silently cut a large
            # one, and the cut message could parse as something else.
            self._sip_port.maxPacketSize = 65535
            if not s.sip.tcp:
                break
            port = self._sip_port.getHost().port
            factory = SipStreamFactory(self.sip, self.reactor, "TCP", **limits)
            try:
                self._sip_stream_ports.append(self.reactor.listenTCP(port, factory, interface=s.sip.host))
            except CannotListenError as exc:
                if s.sip.port != 0 or attempt == 7:
                    raise StartupError(f"sip.tcp: cannot listen on TCP {s.sip.host}:{port} ({exc.socketError})") from None
                self._sip_port.stopListening()
                continue
            factory.local_port = port
            log.info("SIP over TCP on %s:%d", s.sip.host, port)
            break
        if s.sip.tls_cert:
            try:
                context = tls_context(s.path(s.sip.tls_cert), s.path(s.sip.tls_key))
            except ValueError as exc:
                raise StartupError(f"sip.tls_cert: {exc}") from None
            factory = SipStreamFactory(self.sip, self.reactor, "TLS", **limits)
            try:
                listening = self.reactor.listenSSL(s.sip.tls_port, factory, context, interface=s.sip.host)
            except CannotListenError as exc:
                raise StartupError(
                    f"sip.tls_port: cannot listen on {s.sip.host}:{s.sip.tls_port} ({exc.socketError})") from None
            factory.local_port = listening.getHost().port
            self._sip_stream_ports.append(listening)
            log.info("SIP over TLS on %s:%d (SRTP %s)", s.sip.host, factory.local_port, s.sip.srtp)

    def _register_trunks(self, ua, host: str, port: int) -> None:
        """Trunks with `register = true` register to their carrier and keep it refreshed."""
        from callcenter.sip.trunk_registration import TrunkRegistration

        for trunk in self.settings.trunks:
            if not trunk.register:
                continue
            client = TrunkRegistration(
                name=trunk.name, registrar=(trunk.host, trunk.port), domain=trunk.host,
                username=trunk.username, password=trunk.password, local_host=host, local_port=port,
            )
            ua.extra_clients.append(client)
            self.trunk_registrations[trunk.name] = client
            client.start(self.reactor.seconds())
        if self.trunk_registrations:
            self.sip.flush()  # the first REGISTERs go out, and the timer is armed

    async def _start_transcription(self, service, on_event) -> None:
        """Every finished recording is transcribed in worker processes; live transcripts when
        a vosk model is configured."""
        from callcenter.stt.live import start_live_transcriber
        from callcenter.stt.port import SttError
        from callcenter.stt.transcription import start_transcription

        workers = self._place_cpus()
        try:
            self.transcription = start_transcription(
                self.settings, self.repo.engine, self._spawn, on_event=on_event, now=self.now_dt,
                cpus=workers,
            )
            self.live_stt = await start_live_transcriber(self.settings, self._live_transcript,
                                                         cpus=workers)
        except SttError as exc:
            raise StartupError(f"stt: {exc}") from None
        if self.transcription is not None:
            service.on_recording_finished = self.transcription.recording_finished

    def stt_status(self) -> dict:
        """Figures of the batch transcription pool (GET /api/stt/status)."""
        y = self._media_yield
        out = {"enabled": self.transcription is not None, "yield_above": self.settings.stt.yield_above,
               "cpu_placement": self.cpu_plan.describe() if self.cpu_plan is not None else None,
               "media_busy_share": round(y.last_share, 3) if y is not None else None}
        if self.transcription is not None:
            out.update(self.transcription.pool.stats())
        return out

    def _start_media_yield(self) -> None:
        """Batch transcription pauses while the media loop is busy (callcenter/stt/yielding.py)."""
        threshold = self.settings.stt.yield_above
        if threshold <= 0 or self.transcription is None:
            return
        from callcenter.stt.yielding import YieldPolicy
        from callcenter.stt.transcription import MediaYield

        rtp = self.rtp
        self._media_yield = MediaYield(self.transcription.pool, lambda: rtp.busy_s, self.reactor,
                                       YieldPolicy.from_threshold(threshold)).start()

    def _place_cpus(self) -> frozenset[int] | None:
        """Keep recognition workers off the media core (callcenter/cpus.py): pin this process
        to its share and return the workers' CPUs."""
        from callcenter import cpus

        stt = self.settings.stt
        if not (stt.enabled or stt.vosk_model):
            return None
        allowed, online = cpus.machine_cpus()
        try:
            self.cpu_plan = cpus.plan(stt.cpus, allowed, online)
        except ValueError as exc:
            raise StartupError(f"stt.cpus: {exc}") from None
        if self.cpu_plan.media is not None and not cpus.pin_process(self.cpu_plan.media):
            self.cpu_plan = cpus.CpuPlan(None, self.cpu_plan.workers, "pinning not permitted")
        log.info("%s", self.cpu_plan.describe())
        return self.cpu_plan.workers

    def _live_transcript(self, call_id: str, channel: int, event) -> None:
        if self.router is not None:
            self.router.live_transcript(call_id, channel, event)

    async def _purge_daily(self) -> None:
        from callcenter.retention import cutoff, purge_recordings

        while True:
            try:
                report = await purge_recordings(
                    self.repo.engine, self.settings.path(self.settings.storage.dir),
                    older_than=cutoff(self.now_dt(), self.settings.storage.retention_days),
                )
                if report.files:
                    log.info("retention: deleted %d recording(s), %.1f MB", report.files, report.bytes / 1e6)
            except Exception:
                log.exception("retention: purge failed; will try again tomorrow")
            await asyncio.sleep(24 * 3600)

    async def _start_followups(self, service) -> None:
        """Follow-up calls after a case closes, requested in the case's own transaction."""
        from callcenter.callbacks.dialer import FollowUpDialer, make_scheduler, request_follow_up

        if not self.settings.followup.enabled:
            return
        self._change_hooks.append(request_follow_up)
        self.followups = FollowUpDialer(
            engine=self.repo.engine,
            scheduler=make_scheduler(self.settings),
            router=self.router,
            service=service,
            clock=self.reactor,
            now_dt=self.now_dt,
            spawn=self._spawn,
        )
        await self.followups.start()

    def _preload_suggestions(self) -> None:
        """Reference data and the category model loaded (trained once per machine if
        missing) in a thread, so the first 识别 on the desk does not wait for them."""
        from case_core import suggest

        async def load() -> None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, suggest.load_extractor, self.settings)
            except Exception:
                log.exception("suggestions: could not load the reference data or category model")

        self._spawn(load())

    async def _run_change_hooks(self, conn, state, events) -> None:
        for hook in self._change_hooks:
            await hook(conn, state, events)

    def _start_sms(self) -> None:
        """SMS to reporters: queued in the same transaction as the case change, sent by a dispatcher."""
        from callcenter.notify.dispatcher import Dispatcher, make_driver
        from callcenter.notify.outbox import enqueue_for_event
        from callcenter.notify.templates import SmsTemplates

        sms = self.settings.sms
        if not sms.enabled:
            return
        templates = SmsTemplates(sms.templates_path(), max_parts=sms.max_parts)

        async def queue_sms(conn, state, events) -> None:
            for event in events:
                await enqueue_for_event(
                    conn, event, reporter_phone=state.reporter_phone, now=event.at, templates=templates, settings=sms,
                    state=state,
                )

        self._change_hooks.append(queue_sms)
        self.sms_dispatcher = Dispatcher(self.repo.engine, make_driver(sms), sms, clock=self.now_dt)
        self.sms_dispatcher.start()

    async def _start_acd(self, hub_holder: dict):
        """Queues and agents, when any agent has a profile (extension); else the IVR takes messages."""
        from callcenter.calls.acd_driver import AcdDriver, default_config
        from callcenter.acd_store import AcdStore
        from callcenter.desk_service import DeskService

        store = AcdStore(self.repo.engine, writer=self.writer)
        profiles = await store.profiles()
        if not profiles:
            log.info("no agent profiles: calls go to voice messages (hotline demo seed creates agent1)")
            return None

        def publish(kind: str, data: dict | None, to_user: str | None = None, to_roles=None) -> None:
            hub = hub_holder.get("hub")
            if hub is not None:
                hub.publish(kind, data, to_user=to_user, to_roles=to_roles)

        self.acd = AcdDriver(
            default_config(
                profiles,
                ring_timeout_s=self.settings.acd.ring_timeout_s,
                wrap_up_s=self.settings.acd.wrap_up_s,
                callback_offer_after_s=self.settings.acd.callback_offer_after_s or None,
            ),
            clock=self.reactor,
            tz=self.tz,
            calls=self.router,
            publish=publish,
            record=store.log_event,
            spawn=self._spawn,
        )
        desk = DeskService(acd_driver=self.acd, repo=self.repo, router=self.router, now_dt=self.now_dt)
        desk.extensions = {p.username: p.extension for p in profiles}
        self.acd.screen_pop = desk.screen_pop
        self.router.acd = self.acd
        # Callers who chose "call me back, keep my place" before a stop get their place back.
        from callcenter.kept_callbacks import KeptCallbackStore

        self.acd.keep_places(KeptCallbackStore(self.repo.engine, self.tz),
                             max_tries=self.settings.acd.callback_max_tries,
                             retry_s=self.settings.acd.callback_retry_s)
        await self.acd.restore_kept()
        return desk

    def _defence_event(self, ev) -> None:
        """A SIP source banned or unbanned (callcenter.sip.defence): into the audit log."""
        from callcenter.sip.defence import SourceBanned

        if self.audit is None:
            return
        if isinstance(ev, SourceBanned):
            detail = {"reason": ev.reason, "count": ev.count, "ban_s": self.settings.sip.ban_s}
            self.audit.record_soon("", "sip_ban", ev.source, ev.source, detail, now=self.reactor.seconds())
        else:
            self.audit.record_soon("", "sip_unban", ev.source, ev.source, {"dropped": ev.dropped},
                                   now=self.reactor.seconds())

    def _start_metrics(self) -> None:
        """Prometheus figures (GET /metrics): counted on the SIP socket, once per media tick,
        as calls end and as screen pops go out; the rest is read from live state at scrape time."""
        import ipaddress

        from callcenter.metrics import HotlineMetrics

        m = self.settings.metrics
        if not m.enabled:
            return
        self.metrics = HotlineMetrics(self, node=m.node or self.settings.cluster.node_id, engine=self.repo.engine, now_dt=self.now_dt,
                                      db_ttl_s=m.cache_s)
        self.sip.on_message = self.metrics.sip_message
        self.rtp.on_lag = self.metrics.tick_lag.observe
        self.router.on_call_ended = self.metrics.call_ended
        if self.acd is not None and self.acd.screen_pop is not None:
            self.acd.screen_pop = self.metrics.timed_screen_pop(self.acd.screen_pop)
        self.metrics.start_loop_probe()
        host = self.settings.web.host
        try:
            local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = host == "localhost"
        if not m.token and not local:
            log.warning("GET /metrics is open on %s: set [metrics] token to require a bearer token", host)

    async def _refresh_accounts(self, accounts) -> None:
        while True:
            await asyncio.sleep(ACCOUNTS_REFRESH_S)
            try:
                await accounts.refresh()
            except Exception:  # a database hiccup must not stop future refreshes
                log.warning("reloading SIP accounts failed; keeping the previous ones", exc_info=True)

    def _make_cluster_node(self):
        """This node's membership (`[cluster] node_id`); without one, a read-only view of the
        table for GET /api/cluster (empty on a single node)."""
        from callcenter.cluster.pg_node import ClusterNode

        c = self.settings.cluster
        self.cluster = ClusterNode(self.repo.engine, node_id=c.node_id, heartbeat_s=c.heartbeat_s,
                                   down_after_s=c.down_after_s, now_dt=self.now_dt,
                                   active_calls=lambda: len(self.router.calls),
                                   bindings=self.proxy_bindings)

        def apply(state: str) -> None:
            self.sip.ua.available = state != "draining"
            self.router.admission.draining = state == "draining"

        self.cluster.on_state.append(apply)
        return self.cluster

    async def stop(self) -> None:
        if self.cluster is not None:
            await self.cluster.stop()
        if self.cluster_events is not None:
            await self.cluster_events.stop()
        if self._retention is not None:
            self._retention.cancel()
        if self._accounts_refresher is not None:
            self._accounts_refresher.cancel()
            try:
                await self._accounts_refresher
            except asyncio.CancelledError:
                pass
        if self.acd is not None:
            self.acd.stopping = True  # hanging up frees agents: no callback is placed then
        if self.router is not None:
            self.router.stop()
        if self.acd is not None:
            self.acd.stop()
        if self.sms_dispatcher is not None:
            await self.sms_dispatcher.stop()
        if self.followups is not None:
            self.followups.stop()
        if self.live_stt is not None:
            await self.live_stt.stop()
        if self.gc_pacer is not None:
            self.gc_pacer.uninstall()
        if self.metrics is not None:
            await self.metrics.stop()
        if self._media_yield is not None:
            self._media_yield.stop()
        if self.transcription is not None:
            await self.transcription.stop()
        if self._sip_port is not None:
            # Give the BYEs just sent a moment on the wire before the socket closes.
            await asyncio.sleep(0.1)
            stopped = self._sip_port.stopListening()
            if stopped is not None:
                await stopped.asFuture(asyncio.get_running_loop())
        for listening in self._sip_stream_ports:
            stopped = listening.stopListening()
            if stopped is not None:
                await stopped.asFuture(asyncio.get_running_loop())
        self._sip_stream_ports = []
        if self.sip is not None:
            self.sip.stop()
        if self.rtp is not None:
            self.rtp.stop()
        # Let pending recording/database work finish (it can spawn more, e.g. a report after a message).
        for _ in range(5):
            if not self._tasks:
                break
            await asyncio.wait(list(self._tasks), timeout=3)
        self.executor.shutdown(wait=True)
        if self._web_runner is not None:
            await self._web_runner.cleanup()
        if self.writer is not None:
            await self.writer.close()  # every queued row is written before the database closes
            self.writer.engine.dispose()
        if self.repo is not None:
            await self.repo.close()


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code."""
    from callcenter.cpus import background_thread

    loop = install_reactor()
    # Work the loop hands to threads (database transactions, file work) runs nicer than the
    # loop itself, so a due media tick wins the core.
    loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="background", initializer=background_thread))
    from twisted.internet import defer, reactor

    hotline = Hotline(settings, reactor)
    outcome = {"code": 0}

    def started(addresses: Addresses) -> None:
        # Everything loaded at start-up stays: keep it out of the collector's way. From here
        # collections run right after a media tick's sends, never in the middle of one.
        gc.freeze()
        from callcenter.gc_pacer import GcPacer

        hotline.gc_pacer = GcPacer().install().start(reactor)
        if hotline.rtp is not None:
            hotline.rtp.after_tick = hotline.gc_pacer.after_tick
        # Helper threads (database, recording writer) hand the GIL back after at most this
        # long when the loop wants it; Python's default of 5 ms would be a 5 ms late tick.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        print(f"热线已启动 / hotline is up", flush=True)
        print(f"SIP:  {addresses.sip}", flush=True)
        print(f"Web:  {addresses.web}", flush=True)

    def failed(failure) -> None:
        if failure.check(StartupError):
            print(f"error: {failure.value}", file=sys.stderr, flush=True)
        else:
            print(f"error: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
            log.error("startup failed", exc_info=failure.value)
        outcome["code"] = 2
        reactor.stop()

    def go() -> None:
        d = defer.Deferred.fromFuture(asyncio.ensure_future(hotline.start()))
        d.addCallbacks(started, failed)

    reactor.callWhenRunning(go)
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromFuture(asyncio.ensure_future(hotline.stop()))
    )
    reactor.run()
    return outcome["code"]
