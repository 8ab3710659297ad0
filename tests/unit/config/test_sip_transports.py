"""[sip] keys of SIP over TCP/TLS and SRTP: defaults, and bad values refused with the key named."""

import pytest

from callcenter import config
from tests.unit.config.helpers import load_error


def test_defaults_tcp_on_tls_off_srtp_optional():
    """TCP is on by default (RFC 3261 §18), TLS needs a certificate, SRTP is optional on TLS legs."""
    sip = config.Settings().sip
    assert (sip.tcp, sip.tls_port, sip.tls_cert, sip.tls_key, sip.srtp) == (True, 5061, "", "", "optional")
    assert sip.stream_idle_s > 3600  # outlives the longest registration


@pytest.mark.parametrize("text, fragment", [
    ('[sip]\nsrtp = "sometimes"\n', "sip.srtp"),
    ('[sip]\ntls_cert = "cert.pem"\n', "sip.tls_cert and sip.tls_key"),
    ('[sip]\ntls_key = "key.pem"\n', "sip.tls_cert and sip.tls_key"),
    ("[sip]\ntls_port = 70000\n", "sip.tls_port"),
    ("[sip]\nstream_max_per_source = 0\n", "sip.stream_max_per_source"),
    ("[sip]\nstream_idle_s = -1\n", "sip.stream_idle_s"),
])
def test_bad_transport_keys_are_refused(tmp_path, text, fragment):
    """Each impossible transport setting is a ConfigError naming its key."""
    _, message = load_error(tmp_path, text)
    assert fragment in message
