"""Trunk tables (`[[trunks]]`) and the SIP realm: parsed, validated, errors that name the key."""

import re
import tomllib
from pathlib import Path

import pytest

from callcenter import config

EXAMPLE = Path(__file__).resolve().parents[3] / "sip_config" / "hotline.example.toml"


def test_trunks_parse_with_defaults():
    """Two trunks: values kept, port defaults to 5060, lists become tuples, allow matches networks."""
    s = config.from_mapping({
        "trunks": [
            {"name": "telecom", "host": "192.0.2.10", "allow": ["192.0.2.10", "198.51.100.0/24"], "dids": ["12319"]},
            {"name": "unicom", "host": "203.0.113.5", "port": 5080, "register": True,
             "username": "u", "password": "p", "dids": [96310]},
        ]
    })
    telecom, unicom = s.trunks
    assert (telecom.port, telecom.allow, telecom.dids, telecom.register) == (
        5060, ("192.0.2.10", "198.51.100.0/24"), ("12319",), False)
    assert (unicom.port, unicom.dids, unicom.register) == (5080, ("96310",), True)
    assert telecom.allows("198.51.100.77") and telecom.allows("192.0.2.10")
    assert not telecom.allows("192.0.2.11") and not telecom.allows("not-an-ip")
    assert s.sip.realm == "hotline"


def test_commented_example_trunk_is_valid():
    """The example file's commented [[trunks]] block, uncommented, loads as one trunk."""
    text = EXAMPLE.read_text(encoding="utf-8")
    block = text[text.index("# [[trunks]]"):]
    uncommented = "\n".join(re.sub(r"^# ", "", line) for line in block.splitlines() if not line.startswith("# #"))
    s = config.from_mapping(tomllib.loads(uncommented))
    [trunk] = s.trunks
    assert trunk.name == "carrier" and trunk.allows("198.51.100.3")


@pytest.mark.parametrize(
    "trunk, fragment",
    [
        ({"host": "192.0.2.1", "allow": ["192.0.2.1"]}, "trunks[0].name: every trunk needs a name"),
        ({"name": "a", "allow": ["192.0.2.1"], "prot": 5060}, "trunks[0].prot: unknown key"),
        ({"name": "a", "allow": ["192.0.2.300"]}, "trunks[0] (a).allow: '192.0.2.300' is not an IP"),
        ({"name": "a", "allow": "192.0.2.1"}, "trunks[0].allow: expected a list"),
        ({"name": "a", "allow": ["192.0.2.1"], "port": 0}, "trunks[0] (a).port: port 0"),
        ({"name": "a", "allow": ["192.0.2.1"], "register": "yes"}, "trunks[0].register: expected true or false"),
        ({"name": "a", "register": True, "host": "192.0.2.1"}, "needs username and password"),
        ({"name": "a"}, "set allow (source IPs) or register = true"),
        ({"name": "a", "allow": ["192.0.2.1"], "dids": ["95555"]}, "95555 has no IVR here; add it to sip.dids"),
        ({"name": "a", "allow": ["192.0.2.1"], "dids": ["12x"]}, "'12x' is not a phone number"),
    ],
)
def test_bad_trunk_names_the_key(tmp_path, trunk, fragment):
    """A bad trunk raises ConfigError with the trunk's index/name, the key and the problem."""
    path = tmp_path / "bad.toml"
    path.write_text("[[trunks]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in trunk.items()), encoding="utf-8")
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_duplicate_trunk_names_and_a_bad_realm_are_refused():
    """Two trunks with one name, or a realm with a quote in it, are configuration errors."""
    same = {"name": "a", "allow": ["192.0.2.1"]}
    with pytest.raises(config.ConfigError, match=re.escape("trunks[1] (a).name: another trunk")):
        config.from_mapping({"trunks": [same, same]})
    with pytest.raises(config.ConfigError, match="sip.realm"):
        config.from_mapping({"sip": {"realm": 'ho"tline'}})
    with pytest.raises(config.ConfigError, match="trunks: expected"):
        config.from_mapping({"trunks": {"name": "a"}})


@pytest.mark.parametrize("value", [[], ["SHA-1"], ["MD5", "MD5"], "MD5"])
def test_digest_algorithms_must_be_md5_and_or_sha256(value):
    """sip.digest_algorithms takes MD5 and/or SHA-256, each once; anything else names the key."""
    with pytest.raises(config.ConfigError, match="sip.digest_algorithms"):
        config.from_mapping({"sip": {"digest_algorithms": value}})
    assert config.from_mapping({"sip": {"digest_algorithms": ["SHA-256", "MD5"]}}).sip.digest_algorithms == (
        "SHA-256", "MD5")


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)
