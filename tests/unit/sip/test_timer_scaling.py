"""The user agent's timer index: many calls, every timer fires once, on time, in order.

`UserAgent` keeps its transactions' deadlines in a heap (so `get_timer`/`handle_timer`
stay cheap with hundreds of calls); these tests drive it the way the Twisted driver does
(`get_timer` → `handle_timer(deadline)`) and check it against a reference UA that scans
every transaction, as the UA did before the index existed.
"""

from __future__ import annotations

import random

import pytest

from callcenter.sip.events import CallAcked, CallEnded
from callcenter.sip.message import SipRequest, SipResponse, parse_message, parse_name_addr
from callcenter.sip.ua import UserAgent

from .helpers import PHONE, invite, new_ua, request


class ScanningUserAgent(UserAgent):
    """Reference: the straightforward O(n) scan over every transaction and call."""

    def get_timer(self):
        deadlines = [d for t in self._all_tx() if (d := t.next_deadline()) is not None]
        deadlines += [c.purge_at for c in self._calls.values() if c.purge_at is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now):
        while True:
            due = [(d, n, t) for t in self._all_tx() for n, d in t.timers.items() if d <= now]
            if not due:
                break
            due.sort(key=lambda x: x[0])
            _, name, t = due[0]
            self._fire(t, f"timer_{name}", now)
        for call in list(self._calls.values()):
            if call.purge_at is not None and call.purge_at <= now:
                del self._calls[call.call_id]


def _cid(i: int) -> str:
    return f"load-{i}@192.0.2.10"


def _drive(ua: UserAgent, script: list[tuple[float, str, int]], until: float):
    """Run `script` (time, action, call index) and the UA's timers up to `until`.

    Returns the trace: (time, what was sent, events) per step, in order.
    """
    trace = []
    tags: dict[int, str] = {}
    script = sorted(script, key=lambda s: (s[0], s[2]))
    i = 0
    while True:
        deadline = ua.get_timer()
        next_cmd = script[i][0] if i < len(script) else None
        if next_cmd is not None and (deadline is None or next_cmd <= deadline):
            now, action, n = script[i]
            i += 1
            if action == "invite":
                ua.receive_datagram(invite(call_id=_cid(n), branch=f"z9hG4bKi{n}", from_tag=f"f{n}"),
                                    PHONE, now)
            elif action == "answer":
                ua.answer(_cid(n), b"v=0\r\n", now)
            elif action == "ack":
                ua.receive_datagram(request("ACK", call_id=_cid(n), branch=f"z9hG4bKa{n}",
                                            from_tag=f"f{n}", to_tag=tags.get(n)), PHONE, now)
            elif action == "hangup":
                ua.hangup(_cid(n), now)
        elif deadline is not None and deadline <= until:
            now = deadline
            ua.handle_timer(now)
        else:
            break
        out = []
        for data, addr in ua.datagrams_to_send():
            msg = parse_message(data)
            if isinstance(msg, SipResponse):
                if msg.status == 200 and msg.headers.get("CSeq", "").endswith("INVITE"):
                    n = int(msg.call_id.split("-")[1].split("@")[0])
                    tags[n] = parse_name_addr(msg.headers.get("To")).tag
                out.append((msg.status, msg.call_id, addr))
            else:
                out.append((msg.method, msg.call_id, addr))
        trace.append((round(now, 6), out, ua.events()))
    return trace


def _script(n: int, seed: int) -> list[tuple[float, str, int]]:
    """n calls offered 13 ms apart and answered; some ACKed late, some never, some hung up."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = i * 0.013
        out.append((t, "invite", i))
        out.append((t + 0.05, "answer", i))
        fate = rng.random()
        if fate < 0.4:
            out.append((t + 0.05 + rng.uniform(0.0, 10.0), "ack", i))
        elif fate < 0.6:
            out.append((t + 0.05 + rng.uniform(0.0, 4.0), "ack", i))
            out.append((t + 5.0 + rng.uniform(0.0, 20.0), "hangup", i))
        # else: never ACKed -> 200 retransmitted until Timer H, then BYE
    return out


def test_thousand_unacked_calls_retransmit_on_their_own_schedules_in_deadline_order():
    """1,000 answered calls nobody ACKs: each call's 200 OK goes out again at T1, 2T1, 4T1 …
    (capped at T2) after its own answer, the UA's timers fire in deadline order, every call
    ends with a BYE at 64*T1, and once everything is over no timer is left armed."""
    ua = new_ua()
    n = 1000
    answered_at = {i: i * 0.007 + 0.05 for i in range(n)}
    script = [(i * 0.007, "invite", i) for i in range(n)] + [(answered_at[i], "answer", i) for i in range(n)]
    trace = _drive(ua, script, until=200.0)

    retransmits: dict[str, list[float]] = {}
    byes: dict[str, float] = {}
    ended = []
    last_time = -1.0
    for now, out, events in trace:
        assert now >= last_time  # time only moves forward: deadlines are taken in order
        last_time = now
        for what, call_id, _ in out:
            if what == 200:
                retransmits.setdefault(call_id, []).append(now)
            elif what == "BYE":
                byes.setdefault(call_id, now)
        ended += [e for e in events if isinstance(e, CallEnded)]

    expected = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    for i in range(n):
        cid = _cid(i)
        offsets = [t - answered_at[i] for t in retransmits[cid]]
        assert offsets == pytest.approx(expected, abs=1e-6), cid
        assert byes[cid] - answered_at[i] == pytest.approx(32.0, abs=1e-6)
    assert sorted(e.call_id for e in ended) == sorted(_cid(i) for i in range(n))
    assert all(e.by == "timeout" for e in ended)
    assert ua.get_timer() is None


@pytest.mark.parametrize("seed", [1, 2])
def test_indexed_timers_behave_exactly_like_scanning_every_transaction(seed):
    """Same script, same random tags: the UA sends the same datagrams at the same times and
    reports the same events as a UA that scans every transaction on each timer."""
    script = _script(300, seed)
    fast = _drive(new_ua(rng=random.Random(seed)), script, until=300.0)
    slow = _drive(ScanningUserAgent(local_host="198.51.100.1", local_port=5060,
                                    rng=random.Random(seed)), script, until=300.0)
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow):
        assert a[0] == b[0]
        assert sorted(a[1]) == sorted(b[1])  # same datagrams at the same instant
        assert a[2] == b[2]


def test_acked_calls_stop_retransmitting_and_are_forgotten():
    """An ACK cancels a call's retransmissions even though its old deadlines stay indexed;
    ended calls are purged after 64*T1 and then nothing is armed."""
    ua = new_ua()
    n = 500
    script = []
    for i in range(n):
        script += [(i * 0.01, "invite", i), (i * 0.01 + 0.02, "answer", i),
                   (i * 0.01 + 0.3, "ack", i), (i * 0.01 + 2.0, "hangup", i)]
    trace = _drive(ua, script, until=500.0)
    acked = [e for _, _, evs in trace for e in evs if isinstance(e, CallAcked)]
    assert len(acked) == n
    twohundreds = [c for _, out, _ in trace for what, c, _ in out if what == 200]
    # one 200 per INVITE (no retransmission: ACK within T1) + nothing else answered 200 …
    # … except the BYEs' own responses, which the phone never sends here.
    assert len(twohundreds) == n
    byes = [c for _, out, _ in trace for what, c, _ in out if what == "BYE"]
    # BYE is retransmitted (no answer from the phone) until Timer F: 11 sends per call.
    assert len(byes) == 11 * n
    assert ua.get_timer() is None
    assert not ua._calls
