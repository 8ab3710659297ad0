"""Outbound registration of a carrier trunk, against sipp as the carrier's registrar."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import start_server, stop_server
from tests.e2e.peers.runner import SippUas

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("password, wanted", [("trunk-secret", "registered"), ("wrong-secret", "failed")])
def test_trunk_registers_with_digest_and_shows_its_state(tmp_path, prompts_dir, password, wanted):
    """register = true: REGISTER → 401 → REGISTER with digest → 200 (registered) or 403 (failed, with the reason)."""
    with SippUas("carrier_registrar", timeout=30, keys={"user": "hotline", "secret": "trunk-secret"}) as carrier:
        extra = (
            f'[[trunks]]\nname = "carrier"\nhost = "127.0.0.1"\nport = {carrier.port}\n'
            f'username = "hotline"\npassword = "{password}"\nregister = true\n'
        )
        server = start_server(tmp_path, prompts_dir, extra=extra)
        try:
            trunks: list = []
            for _poll in range(50):
                status, trunks = server.api("/api/trunks")
                if status == 200 and trunks and trunks[0]["state"] == wanted:
                    break
                time.sleep(0.3)
            assert trunks and trunks[0]["name"] == "carrier" and trunks[0]["state"] == wanted, (trunks, server.log())
            if wanted == "registered":
                assert trunks[0]["expires_at"] is not None
            else:
                assert "403" in trunks[0]["detail"] and trunks[0]["next_attempt_at"] is not None
        finally:
            stop_server(server)
