"""Outbound trunk registration against our own registrar core (both sides pure, fake time)."""

import random

from callcenter.sip.digest import ha1
from callcenter.sip.message import parse_message
from callcenter.sip.registrar import Registrar
from callcenter.sip.trunk_registration import TrunkRegistration

CARRIER = ("127.0.0.1", 5070)


def _pair(password="secret-pw", expires=600):
    carrier = Registrar(realm="carrier.example", lookup=lambda user, alg: ha1("hotline", "carrier.example", "secret-pw", alg)
                        if user == "hotline" else None, rng=random.Random(1), min_expires=60, max_expires=3600)
    trunk = TrunkRegistration(name="carrier", registrar=CARRIER, domain="carrier.example", username="hotline",
                              password=password, local_host="127.0.0.1", local_port=5060, expires=expires,
                              rng=random.Random(2))
    return carrier, trunk


def _exchange(carrier, trunk, now):
    """Deliver what the trunk sent to the carrier and the answers back; return the statuses."""
    statuses = []
    for data, addr in trunk.datagrams_to_send():
        assert addr == CARRIER
        response = carrier.handle_register(parse_message(data), ("127.0.0.1", 5060), now)
        statuses.append(response.status)
        trunk.handle_response(response, now)
    return statuses


def test_registers_with_digest_and_refreshes_before_expiry():
    """REGISTER → 401 → REGISTER with Authorization → 200; a refresh goes out at 80 % of the expiry."""
    carrier, trunk = _pair()
    trunk.start(0.0)
    assert _exchange(carrier, trunk, 0.0) == [401]
    assert _exchange(carrier, trunk, 0.1) == [200]
    assert trunk.status.state == "registered"
    assert trunk.status.expires_at == 600.1
    assert carrier.bindings("sip:hotline@carrier.example", 1.0)
    assert abs(trunk.get_timer() - (0.1 + 480)) < 1e-6
    trunk.handle_timer(480.2)
    assert trunk.status.state == "registering"
    assert _exchange(carrier, trunk, 480.2) == [401]
    assert _exchange(carrier, trunk, 480.3) == [200]
    assert trunk.status.state == "registered"


def test_wrong_password_fails_and_backs_off_exponentially():
    """Refused credentials → failed with the reason; retries wait 5 s, then 10 s, then 20 s."""
    carrier, trunk = _pair(password="wrong")
    trunk.start(0.0)
    _exchange(carrier, trunk, 0.0)
    assert _exchange(carrier, trunk, 0.1) == [403]
    assert trunk.status.detail == "403 Forbidden"
    waits = []
    now = 0.1
    for _ in range(3):
        assert trunk.status.state == "failed"
        waits.append(round(trunk.get_timer() - now, 3))
        now = trunk.get_timer()
        trunk.handle_timer(now)
        _exchange(carrier, trunk, now)
        _exchange(carrier, trunk, now)
    assert waits == [5.0, 10.0, 20.0]
    assert trunk.status.failures == 4  # the first refusal and three retries


def test_silence_from_the_registrar_retransmits_then_times_out():
    """No answer: the REGISTER is resent (Timer E) and after 32 s the trunk is failed."""
    _carrier, trunk = _pair()
    trunk.start(0.0)
    first = trunk.datagrams_to_send()
    resent = 0
    now = 0.0
    while trunk.status.state == "registering" and now < 40:
        now = trunk.get_timer()
        trunk.handle_timer(now)
        resent += len(trunk.datagrams_to_send())
    assert first and resent >= 5
    assert trunk.status.state == "failed" and "no response" in trunk.status.detail
    assert 32.0 <= now < 33.0


def test_responses_to_other_transactions_are_not_taken():
    """A response whose Via branch the trunk did not send is not its business."""
    carrier, trunk = _pair()
    trunk.start(0.0)
    [(data, _)] = trunk.datagrams_to_send()
    response = carrier.handle_register(parse_message(data), ("127.0.0.1", 5060), 0.0)
    response.headers.set("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKother")
    assert not trunk.owns(response)
    trunk.handle_response(response, 0.0)
    assert trunk.status.state == "registering"
