"""The [sms] config table: defaults, values, and errors that name the key."""

import pytest

from callcenter.config import ConfigError
from callcenter.notify.settings import from_mapping, load_notify_settings


def test_no_sms_table_means_the_log_driver_and_defaults(tmp_path):
    """A config without [sms] gives the embedded log driver and 21:00–08:00 quiet hours."""
    cfg = tmp_path / "hotline.toml"
    cfg.write_text('[web]\nport = 8080\n', encoding="utf-8")
    s = load_notify_settings(cfg)
    assert s.driver == "log" and (s.quiet_start, s.quiet_end) == ("21:00", "08:00")


def test_values_are_read_and_templates_dir_is_relative_to_the_config(tmp_path):
    """Keys from [sms] are used; templates_dir resolves against the config file's folder."""
    cfg = tmp_path / "hotline.toml"
    cfg.write_text('[sms]\ndriver = "kannel"\nmax_attempts = 3\ntemplates_dir = "sms"\n', encoding="utf-8")
    s = load_notify_settings(cfg)
    assert (s.driver, s.max_attempts) == ("kannel", 3)
    assert s.templates_path() == tmp_path / "sms"


@pytest.mark.parametrize(
    "table, key",
    [
        ({"driver": "sms-cat"}, "sms.driver"),
        ({"quiet_start": "25:00"}, "sms.quiet_start"),
        ({"max_attempts": "three"}, "sms.max_attempts"),
        ({"max_attempts": 0}, "sms.max_attempts"),
        ({"kannel_url": "ftp://x"}, "sms.kannel_url"),
        ({"senderr": "1"}, "sms.senderr"),
        ({"driver": "smpp"}, "sms.smpp_system_id"),
    ],
)
def test_bad_values_name_the_key(table, key):
    """Each bad value is a ConfigError whose message starts with the offending key."""
    with pytest.raises(ConfigError) as err:
        from_mapping(table)
    assert str(err.value).startswith(key)
