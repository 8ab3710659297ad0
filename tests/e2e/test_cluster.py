"""Issue 17 end to end: Kamailio (Debian's package) in front of two `hotline serve` nodes on
one PostgreSQL, all on loopback ports; sipp callers through Kamailio; a node killed with -9."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from callcenter.cluster.runner import Cluster
from tests.e2e.audio import report_pcap
from tests.e2e.conftest import query, run_hotline
from tests.e2e.peers.pcap import speech_pcm
from tests.e2e.peers.ports import free_tcp_port, free_udp_port, free_udp_port_block
from tests.e2e.peers.runner import run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SPEECH = "aishell1_BAC009S0002W0122.wav"


@pytest.fixture
def cluster(tmp_path, prompts_dir, pg_url):
    ports = [(free_udp_port(), free_tcp_port(), free_udp_port_block(8)) for _ in range(2)]
    c = Cluster(tmp_path / "cluster", pg_url, ports, sip_port=free_udp_port(), prompts_dir=prompts_dir,
                rtp_ports=8, seed_city=False,
                extra={"stt": {"enabled": False}, "sip": {"tcp": False},  # Kamailio → nodes is UDP
                       "cluster": {"heartbeat_s": 0.5, "down_after_s": 3.0}})
    c.start()
    try:
        yield c
    finally:
        c.stop()


def _api(node, token: str, path: str, body: dict | None = None):
    req = urllib.request.Request(node.web_url.rstrip("/") + path, method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _states(node, token: str) -> dict[str, str]:
    status, body = _api(node, token, "/api/cluster")
    assert status == 200, body
    return {n["node_id"]: n["state"] for n in body["nodes"]}


def _call(cluster, tmp_path, caller: str):
    pcap = report_pcap(tmp_path, cluster.prompts_dir, speech_pcm(SPEECH))
    return run_sipp("call_report", target=("127.0.0.1", cluster.sip_port), caller=caller, pcap=pcap, timeout=60)


def _calls_of(cluster, caller: str) -> list[tuple]:
    return query(cluster.db_url, "select node_id, end_reason, case_id from calls where caller = :c", c=caller)


def _execute(db_url: str, sql: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from case_core.adapters.sqlalchemy_repo import sync_url

    engine = create_engine(sync_url(db_url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def _wait_rows(fetch, ok, tries: int = 75):
    """Poll a bounded number of times, then hand back what was last read (judged by the caller)."""
    rows = fetch()
    for _ in range(tries):
        if ok(rows):
            break
        time.sleep(0.2)
        rows = fetch()
    return rows


def _logs(cluster) -> str:
    return "\n".join([f"--- {n.node_id}\n{n.log()[-3000:]}" for n in cluster.nodes]
                     + ["--- kamailio\n" + "".join(cluster.kamailio_output[-60:])])


def test_callers_through_kamailio_reach_both_nodes_and_become_cases(cluster, tmp_path):
    """sipp calls Kamailio's port: each call becomes a case, the nodes share the work
    (round robin), and the call and recording rows carry the node that handled them."""
    token = run_hotline("token", "create", "admin", "--config", str(cluster.nodes[0].config)).stdout.strip()
    assert _states(cluster.nodes[1], token) == {"node-1": "up", "node-2": "up"}
    seen: set[str] = set()
    for i in range(4):
        caller = f"1380013{i:04d}"
        result = _call(cluster, tmp_path, caller)
        assert result.returncode == 0, f"sipp failed:\n{result.stdout[-1500:]}\n{result.log_text[-2000:]}\n{_logs(cluster)}"
        rows = _wait_rows(lambda: _calls_of(cluster, caller), lambda r: r and r[0][2] is not None)
        [(node_id, _, case_id)] = rows
        assert case_id is not None, _logs(cluster)
        assert node_id in ("node-1", "node-2")
        recs = query(cluster.db_url, "select distinct node_id from recordings where call_id in "
                     "(select call_id from calls where caller = :c)", c=caller)
        assert recs == [(node_id,)]
        seen.add(node_id)
        if seen == {"node-1", "node-2"}:
            break
    assert seen == {"node-1", "node-2"}, f"all calls went to {seen}\n{_logs(cluster)}"
    # The case is one case in the shared database, visible from the node that did not take it.
    status, cases = _api(cluster.nodes[0], token, "/api/cases")
    assert status == 200 and sum(c["reporter_phone"].startswith("1380013") for c in cases) >= 2


def test_a_node_killed_with_9_leaves_the_hotline_answering(cluster, tmp_path):
    """kill -9 one node: the next callers are answered by the survivor (Kamailio fails over
    on the timeout and its OPTIONS probes mark the node down); /api/cluster shows it down;
    back up, it recovers its own interrupted call and leaves the other node's open call alone."""
    a, b = cluster.nodes
    token = run_hotline("token", "create", "admin", "--scope", "admin", "--config", str(a.config)).stdout.strip()
    # A call open on node-2 while node-1 restarts must stay open: written as node-2's live call.
    _execute(cluster.db_url, "insert into calls (call_id, direction, did, caller, started_at, ivr_path, node_id) "
          "values ('open-on-node-2', 'inbound', '12319', '13900000002', now(), '', 'node-2')")
    _execute(cluster.db_url, "insert into calls (call_id, direction, did, caller, started_at, ivr_path, node_id) "
          "values ('open-on-node-1', 'inbound', '12319', '13900000001', now(), '', 'node-1')")
    cluster.kill_node(a)
    for i in range(3):
        caller = f"1390013{i:04d}"
        result = _call(cluster, tmp_path, caller)
        assert result.returncode == 0, f"sipp failed:\n{result.stdout[-1500:]}\n{result.log_text[-2000:]}\n{_logs(cluster)}"
        rows = _wait_rows(lambda: _calls_of(cluster, caller), lambda r: r and r[0][2] is not None)
        assert [(r[0], r[2] is not None) for r in rows] == [("node-2", True)], _logs(cluster)
    states = _wait_rows(lambda: _states(b, token), lambda s: s.get("node-1") == "down")
    assert states == {"node-1": "down", "node-2": "up"}

    cluster.start_node(a)
    cluster.wait_healthy(a)
    ended = dict(query(cluster.db_url, "select call_id, end_reason from calls where call_id like 'open-on-%'"))
    assert ended == {"open-on-node-1": "interrupted", "open-on-node-2": None}
    states = _wait_rows(lambda: _states(b, token), lambda s: s.get("node-1") == "up")
    assert states == {"node-1": "up", "node-2": "up"}


def test_a_drained_node_takes_no_new_calls_and_comes_back(cluster, tmp_path):
    """`hotline cluster drain node-1`: node-1 answers OPTIONS with 503, Kamailio sends every
    new call to node-2; `hotline cluster resume node-1` puts it back in the rotation."""
    a, b = cluster.nodes
    token = run_hotline("token", "create", "admin", "--scope", "admin", "--config", str(a.config)).stdout.strip()
    out = run_hotline("cluster", "drain", "node-1", "--config", str(b.config)).stdout
    assert "node-1 drains" in out
    states = _wait_rows(lambda: _states(a, token), lambda s: s.get("node-1") == "draining")
    assert states == {"node-1": "draining", "node-2": "up"}
    for i in range(3):
        caller = f"1370013{i:04d}"
        result = _call(cluster, tmp_path, caller)
        assert result.returncode == 0, f"sipp failed:\n{result.log_text[-2000:]}\n{_logs(cluster)}"
        rows = _wait_rows(lambda: _calls_of(cluster, caller), lambda r: r and r[0][2] is not None)
        assert [r[0] for r in rows] == ["node-2"], _logs(cluster)
    # Only admins may drain; an unknown node is a 404.
    assert _api(a, token, "/api/cluster/node-9/drain", {})[0] == 404
    status, entry = _api(a, token, "/api/cluster/node-1/resume", {})
    assert status == 200 and entry["asked"] == "up"
    states = _wait_rows(lambda: _states(b, token), lambda s: s.get("node-1") == "up")
    assert states == {"node-1": "up", "node-2": "up"}
    listing = run_hotline("cluster", "list", "--json", "--config", str(a.config)).stdout
    assert {n["node_id"]: n["state"] for n in json.loads(listing)} == {"node-1": "up", "node-2": "up"}


ALWAYS_OPEN = {"ivr": {"open": "00:00", "close": "24:00", "open_days": "everyday"}}


@pytest.fixture
def open_cluster(tmp_path, prompts_dir, pg_url):
    ports = [(free_udp_port(), free_tcp_port(), free_udp_port_block(8)) for _ in range(2)]
    c = Cluster(tmp_path / "cluster", pg_url, ports, sip_port=free_udp_port(), prompts_dir=prompts_dir,
                rtp_ports=8, seed_city=False,
                extra={"stt": {"enabled": False}, "sip": {"tcp": False},
                       "cluster": {"heartbeat_s": 0.5, "down_after_s": 3.0}, **ALWAYS_OPEN})
    c.start()
    try:
        yield c
    finally:
        c.stop()


def test_an_agent_registered_at_kamailio_answers_and_the_pop_reaches_the_other_node(open_cluster, tmp_path):
    """baresip registers as 1001 at Kamailio (digest from the hotline's SIP accounts, usrloc in
    PostgreSQL); node-1 is drained so the caller lands on node-2, which rings 1001 through
    Kamailio; agent1's screen pop reaches a browser connected to node-1 (LISTEN/NOTIFY)."""
    from tests.e2e.audio import heard_correlation
    from tests.e2e.peers.runner import Baresip
    from tests.e2e.test_queue_agent import EventListener

    cluster = open_cluster
    a, b = cluster.nodes
    agent_token = run_hotline("token", "create", "agent1", "--config", str(a.config)).stdout.strip()
    admin_token = run_hotline("token", "create", "admin", "--scope", "admin", "--config", str(a.config)).stdout.strip()
    assert _api(a, admin_token, "/api/cluster/node-1/drain", {})[0] == 200
    speech = speech_pcm("aishell1_BAC009S0764W0121.wav")
    pcap = report_pcap(tmp_path, cluster.prompts_dir, speech, press_hash=False, tail_s=2.0)
    caller = "13612340000"
    with Baresip(user="1001", registrar=("127.0.0.1", cluster.sip_port), password="hotline12319",
                 answer_auto=True) as phone:
        phone.wait_log(r"200 OK|registered", timeout=15)
        bound = _wait_rows(lambda: query(cluster.db_url, "select username from location"), lambda r: r)
        assert bound == [("1001",)], phone.log_text()[-2000:]
        # node-2 sees the binding at its next heartbeat: until then the desk says "not registered".
        ready = _wait_rows(lambda: _api(b, agent_token, "/api/desk/state", {"state": "ready"}),
                           lambda r: r[0] == 200)
        assert ready[0] == 200 and ready[1]["status"] == "ready", ready
        ws_a = a.web_url.replace("http", "ws") + "ws"
        ws_b = b.web_url.replace("http", "ws") + "ws"
        with EventListener(ws_a, agent_token) as on_a, EventListener(ws_b, agent_token) as on_b:
            result = run_sipp("call_report", target=("127.0.0.1", cluster.sip_port), caller=caller, pcap=pcap,
                              timeout=60)
            assert result.returncode == 0, result.log_text[-2000:] + _logs(cluster)
            _wait_rows(lambda: on_a.of("screen_pop"), lambda p: p, tries=25)
        heard = phone.received_wav()
    [(node_id,)] = query(cluster.db_url, "select node_id from calls where caller = :c", c=caller)
    assert node_id == "node-2"
    pops_b, pops_a = on_b.of("screen_pop"), on_a.of("screen_pop")
    assert pops_b and pops_b[0]["caller"] == caller, f"{on_b.events}\n{_logs(cluster)}"
    assert pops_a and pops_a[0]["call_id"] == pops_b[0]["call_id"], f"no pop on node-1: {on_a.events}"
    assert heard is not None and heard_correlation(heard, speech) > 0.6
