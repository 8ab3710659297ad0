"""callcenter.metrics without a loop or database: SIP first lines, outcomes, histograms, the
exposition, and the Grafana dashboard against it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from callcenter.acd.model import AGENT_STATUSES
from callcenter.metrics import AGENT_STATES, METRIC_NAMES, Histogram, HotlineMetrics, call_outcome, sip_start_line

DASHBOARD = Path(__file__).resolve().parents[3] / "sip_config" / "grafana" / "hotline.json"
NOW = datetime(2026, 12, 7, 10, 0)

INVITE = (b"INVITE sip:12319@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070\r\n"
          b"CSeq: 1 INVITE\r\n\r\n")
OK_BYE = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1\r\ncseq: 2 BYE\r\nContent-Length: 0\r\n\r\n"


def test_sip_start_line_reads_requests_and_responses():
    """Requests give their method; responses their status and the CSeq method (any case)."""
    assert sip_start_line(INVITE) == ("INVITE", "")
    assert sip_start_line(OK_BYE) == ("BYE", "200")
    assert sip_start_line(b"SIP/2.0 486 Busy Here\r\nCSeq: 7 INVITE\r\n\r\n") == ("INVITE", "486")


def test_sip_start_line_bounds_the_labels():
    """Unknown methods, garbage and keep-alives cannot add label values of their own."""
    assert sip_start_line(b"FOOBAR sip:x SIP/2.0\r\n\r\n") == ("other", "")
    assert sip_start_line(b"\x00\x01garbage-without-space") == ("other", "")
    assert sip_start_line(b"\r\n\r\n") == ("keepalive", "")
    assert sip_start_line(b"SIP/2.0 2x0 Odd\r\n\r\n") == ("other", "other")


def test_histogram_buckets_are_cumulative():
    """observe() lands each value in the first bucket it fits; export is cumulative with +Inf."""
    h = Histogram((0.01, 0.1))
    for v in (0.005, 0.01, 0.05, 3.0):
        h.observe(v)
    assert h.buckets() == [("0.01", 2), ("0.1", 3), ("+Inf", 4)]
    assert h.count == 4 and abs(h.sum - 3.065) < 1e-9


def _call(**kw):
    base = dict(did="12319", answered_at=1.0, bridged_agent=None, callback_requested=False, queue=None,
                ivr_recording_ids={}, msg_rec=None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_call_outcomes():
    """Each way a call can end maps to one outcome label."""
    assert call_outcome(_call(answered_at=None)) == ("inbound", "unanswered")
    assert call_outcome(_call(bridged_agent="agent1", queue="general")) == ("inbound", "agent")
    assert call_outcome(_call(queue="general", callback_requested=True)) == ("inbound", "callback")
    assert call_outcome(_call(queue="general")) == ("inbound", "abandoned")
    assert call_outcome(_call(ivr_recording_ids={"msg": 3})) == ("inbound", "message")
    assert call_outcome(_call()) == ("inbound", "ivr")
    assert call_outcome(_call(did="outbound:survey")) == ("outbound", "outbound_answered")
    assert call_outcome(_call(did="outbound:survey", answered_at=None)) == ("outbound", "outbound_unanswered")


def test_agent_states_follow_the_acd():
    """The metric's state list is the ACD's, so every state shows (with 0) on the dashboard."""
    assert AGENT_STATES == AGENT_STATUSES


def _sources():
    entry = SimpleNamespace(queue="general", status="waiting", joined_at=NOW - timedelta(seconds=42))
    kept = SimpleNamespace(queue="general", status="callback", joined_at=NOW - timedelta(seconds=90))
    acd = SimpleNamespace(
        state=SimpleNamespace(config=SimpleNamespace(queues={"general": None}),
                              entries={"c1": entry, "c2": kept},
                              agents={"agent1": SimpleNamespace(status="on_call"),
                                      "agent2": SimpleNamespace(status="ready")}),
        now=lambda: NOW)
    router = SimpleNamespace(calls={"c1": _call(), "o1": _call(did="outbound:survey")}, callbacks={}, rejected=2)
    rtp = SimpleNamespace(legs={20000: object()}, frames_skipped=3)
    return SimpleNamespace(router=router, acd=acd, rtp=rtp,
                           stt_status=lambda: {"queued": 4, "running": 1, "completed": 9, "paused": False})


def _samples(metrics: HotlineMetrics) -> dict[tuple[str, tuple], float]:
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_exposition_reads_live_state_and_counts():
    """Gauges come from the router, ACD, RTP engine and STT pool; counters from the hooks."""
    m = HotlineMetrics(_sources(), node="node-a")
    m.sip_message(INVITE, "in")
    m.sip_message(INVITE, "in")
    m.sip_message(OK_BYE, "out")
    m.call_ended(_call(ivr_recording_ids={"m": 1}))
    m.tick_lag.observe(0.0004)
    s = _samples(m)
    [(info_labels, info)] = [(dict(k), v) for (n, k), v in s.items() if n == "hotline_build_info"]
    assert info == 1.0 and info_labels["node"] == "node-a" and info_labels["version"] == "0.1.0"
    assert s[("hotline_active_calls", (("direction", "inbound"),))] == 1
    assert s[("hotline_active_calls", (("direction", "outbound"),))] == 1
    assert s[("hotline_calls_total", (("direction", "inbound"), ("outcome", "message")))] == 1
    assert s[("hotline_calls_total", (("direction", "inbound"), ("outcome", "rejected")))] == 2
    assert s[("hotline_sip_messages_total", (("direction", "in"), ("method", "INVITE"), ("status", "")))] == 2
    assert s[("hotline_sip_messages_total", (("direction", "out"), ("method", "BYE"), ("status", "200")))] == 1
    assert s[("hotline_queue_waiting", (("queue", "general"),))] == 1
    assert s[("hotline_queue_callbacks_waiting", (("queue", "general"),))] == 1
    assert s[("hotline_queue_longest_wait_seconds", (("queue", "general"),))] == 42
    assert s[("hotline_agents", (("state", "on_call"),))] == 1
    assert s[("hotline_agents", (("state", "paused"),))] == 0
    assert s[("hotline_rtp_legs", ())] == 1 and s[("hotline_rtp_frames_skipped_total", ())] == 3
    assert s[("hotline_rtp_tick_lag_seconds_bucket", (("le", "0.0005"),))] == 1
    assert s[("hotline_transcription_queue_depth", ())] == 4
    assert s[("hotline_transcription_completed_total", ())] == 9


def test_every_metric_the_dashboard_queries_is_exposed():
    """Each hotline_* name in the Grafana dashboard's queries is a sample name of /metrics."""
    sources = _sources()
    # A SIP endpoint that has refused, dropped and banned something (the defence panels).
    sources.sip = SimpleNamespace(rejected={"400": 1}, bans={"flood": 1}, streams={}, streams_refused={},
                                  defence=SimpleNamespace(dropped={"banned": 5}, banned_count=lambda: 1))
    m = HotlineMetrics(sources, node="n")
    m._db = {"case": {"accepted": 1}, "sms": {"queued": 1}, "callback": {"pending": 1}, "overdue": 0,
             "callback_due": 0, "rtf": 0.3}
    m.sip_message(INVITE, "in")
    from prometheus_client import generate_latest

    text = generate_latest(m.registry).decode()
    exposed = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    families = {fam.name for fam in text_string_to_metric_families(text)}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queried = {name for panel in dashboard["panels"] for t in panel["targets"]
               for name in re.findall(r"hotline_[a-z0-9_]+", t["expr"])}
    assert len(dashboard["panels"]) >= 10 and queried
    assert queried - exposed == set()
    # And the documented list is what the exposition has.
    assert {n.removesuffix("_total") for n in METRIC_NAMES} == families
