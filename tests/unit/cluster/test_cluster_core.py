"""Cluster pieces without I/O: node states from heartbeats, the [cluster] config checks, a
draining node's answers to OPTIONS and INVITE, the registrar that adds Kamailio's bindings."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from callcenter.admission import Limits, Offer, decide
from callcenter.cluster.membership import NodeRow, describe, node_state
from callcenter.cluster.pg_node import ClusterRegistrar, KamailioBindings
from callcenter.config import ConfigError, from_mapping
from callcenter.sip.message import parse_name_addr
from callcenter.sip.registrar import Binding
from tests.unit.sip.helpers import PHONE, new_ua, request, sent

T0 = datetime(2026, 12, 8, 9, 0, 0)
PG = {"database": {"url": "postgresql://h@127.0.0.1/h"}}


@pytest.mark.parametrize("asked, age_s, state", [
    ("up", 0.5, "up"),
    ("draining", 0.5, "draining"),
    ("up", 5.0, "up"),  # exactly at the limit: still up
    ("up", 5.1, "down"),
    ("draining", 60, "down"),  # a silent node is down whatever was asked
    ("bogus", 1, "up"),
])
def test_node_state_from_heartbeat(asked, age_s, state):
    """A node is down once its heartbeat is older than down_after_s, else what was asked of it."""
    assert node_state(asked, T0, T0 + timedelta(seconds=age_s), 5.0) == state


def test_describe_sorts_and_marks_self():
    """GET /api/cluster's list: by node id, with state, heartbeat age and which node answered."""
    rows = [NodeRow("node-2", "draining", "127.0.0.1:5072", "", T0, T0, 3),
            NodeRow("node-1", "up", "127.0.0.1:5071", "", T0, T0 - timedelta(seconds=30), 0)]
    out = describe(rows, T0 + timedelta(seconds=1), 5.0, me="node-2")
    assert [(n["node_id"], n["state"], n["self"], n["heartbeat_age_s"]) for n in out] == [
        ("node-1", "down", False, 31.0), ("node-2", "draining", True, 1.0)]


@pytest.mark.parametrize("cluster, message", [
    ({"node_id": "node 1"}, "cluster.node_id"),
    ({"node_id": "x" * 33}, "cluster.node_id"),
    ({"proxy": "127.0.0.1"}, "cluster.proxy"),
    ({"proxy": "127.0.0.1:99999"}, "cluster.proxy"),
    ({"heartbeat_s": 0.0}, "cluster.heartbeat_s"),
    ({"heartbeat_s": 5.0, "down_after_s": 5.0}, "cluster.down_after_s"),
])
def test_bad_cluster_settings_are_refused(cluster, message):
    """Each bad [cluster] value is named."""
    with pytest.raises(ConfigError, match=message):
        from_mapping({**PG, "cluster": cluster})


def test_a_cluster_node_needs_postgresql():
    """SQLite cannot be shared by several nodes: a node id with it is refused."""
    with pytest.raises(ConfigError, match="PostgreSQL"):
        from_mapping({"cluster": {"node_id": "node-1"}})
    s = from_mapping({**PG, "cluster": {"node_id": "node-1", "proxy": "127.0.0.1:5060"}})
    assert (s.cluster.node_id, s.cluster.proxy) == ("node-1", "127.0.0.1:5060")


def test_a_draining_node_refuses_new_calls_with_503():
    """Draining: an admissible INVITE gets 503 Retry-After (Kamailio fails it over to another node)."""
    offer = Offer("trunk", "did", "none", False, 0, 0)
    limits = Limits(retry_after_s=30)
    assert decide(offer, limits).action == "admit"
    v = decide(replace(offer, draining=True), limits)
    assert (v.action, v.status, v.retry_after_s, v.why) == ("reject", 503, 30, "node draining")


def test_a_draining_node_answers_the_dispatcher_probe_with_503():
    """Out-of-dialog OPTIONS: 200 while the node takes calls, 503 with Retry-After while it drains."""
    ua = new_ua()
    ua.receive_datagram(request("OPTIONS", branch="z9hG4bKo1"), PHONE, 0)
    (resp, _), = sent(ua)
    assert resp.status == 200
    ua.available = False
    ua.receive_datagram(request("OPTIONS", branch="z9hG4bKo2"), PHONE, 1)
    (resp, _), = sent(ua)
    assert resp.status == 503 and resp.headers.get("Retry-After") == "60"
    assert parse_name_addr(resp.headers.get("To")).tag


class _Local:
    def __init__(self, bindings):
        self._b = bindings

    def bindings_for_user(self, user, now):
        return [b for b in self._b if b.contact.startswith(f"sip:{user}@")]

    def get_timer(self):
        return 42.0


def test_cluster_registrar_adds_phones_registered_at_kamailio():
    """A phone registered at Kamailio is rung as sip:EXT@proxy through the proxy; local bindings stay first."""
    remote = KamailioBindings("127.0.0.1:5060")
    remote.users = frozenset({"1001", "1002"})
    local = Binding("sip:1002@192.0.2.5:5062", 100.0, "c", 1, ("192.0.2.5", 5062))
    reg = ClusterRegistrar(_Local([local]), remote)
    [b] = reg.bindings_for_user("1001", 0.0)
    assert (b.contact, b.source) == ("sip:1001@127.0.0.1:5060", ("127.0.0.1", 5060))
    assert [x.contact for x in reg.bindings_for_user("1002", 0.0)] == [local.contact, "sip:1002@127.0.0.1:5060"]
    assert reg.bindings_for_user("1003", 0.0) == []
    assert reg.get_timer() == 42.0  # everything else is the local registrar's
