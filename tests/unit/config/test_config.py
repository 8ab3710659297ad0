"""Configuration loading: defaults, example file, and clear errors on bad files."""

import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest

from callcenter import config
from tests.unit.config.helpers import load_error

EXAMPLE = Path(__file__).resolve().parents[3] / "sip_config" / "hotline.example.toml"


def test_defaults_match_the_issue_contract():
    """Defaults: SIP on 5060, web on 8080, SQLite under var/."""
    s = config.load(None)
    assert s.sip.port == 5060
    assert s.web.port == 8080
    assert s.database.url.startswith("sqlite:///var/")


def test_example_file_documents_every_key_with_its_default():
    """The example TOML lists every key of the schema with exactly the default value."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    defaults = asdict(config.load(None))
    for section, values in defaults.items():
        if section == "base_dir" or not isinstance(values, dict):
            continue  # trunks: an array of tables, none by default
        assert section in data, f"[{section}] missing from the example"
        for key, value in values.items():
            if key == "base_dir":
                continue
            assert key in data[section], f"{section}.{key} missing from the example"
            expected = list(value) if isinstance(value, tuple) else value
            assert data[section][key] == expected, f"{section}.{key} differs from the default"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[sip]\nport = 'abc'\n", "sip.port: expected an integer"),
        ("[sip]\nport = 70000\n", "sip.port: port 70000"),
        ("[rtp]\nport_min = 30000\nport_max = 20000\n", "rtp.port_min"),
        ("[web]\nprot = 8080\n", "web.prot: unknown key"),
        ("[webb]\nport = 8080\n", "webb: unknown section"),
        ("[database]\nurl = 'mysql://x'\n", "database.url: unsupported"),
        ("[sip\nport = 1\n", "not valid TOML"),
        ("[ivr]\nopen = '8 am'\n", "ivr.open: expected a time"),
        ("[prompts]\nengine = 'festival'\n", "prompts.engine: expected \"neural\" or \"espeak\""),
    ],
)
def test_bad_config_names_the_key_and_the_problem(tmp_path, text, fragment):
    """A bad file raises ConfigError whose message names the key and what is wrong."""
    p, message = load_error(tmp_path, text)
    assert fragment in message
    assert str(p) in message


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    """storage.dir and a relative SQLite path are taken relative to the config file's folder."""
    p = tmp_path / "h.toml"
    p.write_text("[storage]\ndir = 'recs'\n[database]\nurl = 'sqlite:///db/h.db'\n", encoding="utf-8")
    s = config.load(p)
    assert s.path(s.storage.dir) == tmp_path / "recs"
    assert s.database_url() == f"sqlite:///{tmp_path / 'db' / 'h.db'}"


def test_missing_file_is_a_config_error(tmp_path):
    """A config path that does not exist is reported, not a traceback."""
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "nope.toml")


def test_center_name_is_one_setting_the_sms_signature_follows(tmp_path):
    """[center] name defaults to 12319城建服务热线; the SMS signature is 【name】 unless [sms] signature is set;
    an empty name is refused naming the key."""
    assert config.load(None).center.name == "12319城建服务热线"
    assert config.load(None).sms.signature == "【12319城建服务热线】"
    cfg = tmp_path / "h.toml"
    cfg.write_text('[center]\nname = "96310城市管理服务热线"\n', encoding="utf-8")
    assert config.load(cfg).sms.signature == "【96310城市管理服务热线】"
    cfg.write_text('[center]\nname = "96310城市管理服务热线"\n[sms]\nsignature = "【某市城管】"\n', encoding="utf-8")
    assert config.load(cfg).sms.signature == "【某市城管】"
    cfg.write_text('[center]\nname = " "\n', encoding="utf-8")
    with pytest.raises(config.ConfigError, match="center.name"):
        config.load(cfg)


def test_example_promises_nothing_as_unimplemented():
    """The example file describes what the hotline does (trunk registration is implemented), never "not implemented"."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "not implemented" not in text.lower()
    assert "# register = false" in text and "/api/trunks" in text
