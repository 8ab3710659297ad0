"""GET /metrics on the real server: a sipp call leaves a report, and the scrape shows the call
counted by outcome, its SIP messages counted, and the new case among cases by status."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.audio import report_pcap
from tests.e2e.conftest import start_server, stop_server
from tests.e2e.peers.pcap import speech_pcm
from tests.e2e.peers.runner import run_sipp

pytestmark = pytest.mark.e2e

CALLER = "13812340000"
TOKEN = "e2e-metrics-token-0123456789"


def scrape(server, token: str | None = TOKEN) -> tuple[int, dict]:
    req = urllib.request.Request(server.web_url + "metrics")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for fam in text_string_to_metric_families(text) for s in fam.samples}
    return 200, values


def total(values: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in values.items() if n == name and labels.items() <= dict(ls).items())


@pytest.fixture
def server(tmp_path, prompts_dir):
    s = start_server(tmp_path, prompts_dir, extra=f'[metrics]\ntoken = "{TOKEN}"\nnode = "e2e-node"\ncache_s = 0.0\n')
    try:
        yield s
    finally:
        stop_server(s)


def test_a_call_shows_in_the_metrics(server, prompts_dir, tmp_path):
    """Before the call nothing is counted; after sipp leaves a message: one inbound call ended
    as `message`, its INVITE in and 200 out counted, and one more accepted case."""
    assert scrape(server, token=None)[0] == 401
    status, before = scrape(server)
    assert status == 200
    assert total(before, "hotline_build_info", node="e2e-node") == 1
    assert total(before, "hotline_calls_total") == 0
    assert total(before, "hotline_sip_messages_total", method="INVITE") == 0
    accepted_before = total(before, "hotline_cases", status="accepted")

    pcap = report_pcap(tmp_path, prompts_dir, speech_pcm("aishell1_BAC009S0002W0122.wav"))
    result = run_sipp("call_report", target=server.sip_target, caller=CALLER, pcap=pcap, timeout=60)
    assert result.returncode == 0, f"sipp failed:\n{result.stdout[-2000:]}\n{server.log()}"
    server.wait_for_cases(reporter_phone=CALLER)

    after: dict = {}
    for _poll in range(75):
        after = scrape(server)[1]
        if total(after, "hotline_calls_total") >= 1:
            break
        time.sleep(0.2)
    assert total(after, "hotline_calls_total", direction="inbound", outcome="message") == 1, after
    assert total(after, "hotline_calls_total") == 1
    assert total(after, "hotline_active_calls") == 0
    assert total(after, "hotline_sip_messages_total", direction="in", method="INVITE", status="") == 1
    assert total(after, "hotline_sip_messages_total", direction="out", method="INVITE", status="200") >= 1
    assert total(after, "hotline_sip_messages_total", direction="in", method="BYE", status="") == 1
    assert total(after, "hotline_cases", status="accepted") == accepted_before + 1
    assert total(after, "hotline_cases") > 0
    # The media tick ran during the call and every firing was observed.
    assert total(after, "hotline_rtp_tick_lag_seconds_count") > 100
    assert total(after, "hotline_event_loop_lag_seconds_count") >= 1
