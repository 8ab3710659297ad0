"""Architecture contracts (import-linter): pure cores stay free of I/O frameworks."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_import_contracts_hold():
    """lint-imports reports every contract in .importlinter as kept."""
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(REPO / ".importlinter")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BROKEN" not in proc.stdout


def test_pure_packages_with_an_adapter_list_every_other_module():
    """callcenter.sip holds one SQLAlchemy adapter (store.py); every other module of it is
    named in the pure-cores contract, so a new module cannot slip past it."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(REPO / ".importlinter", encoding="utf-8")
    listed = {line.strip() for line in parser.get("importlinter:contract:pure-cores", "source_modules").splitlines()}
    for package in ("sip",):
        folder = REPO / "callcenter" / package
        modules = {f"callcenter.{package}.{p.stem}" for p in folder.glob("*.py") if p.stem not in ("__init__", "store")}
        assert modules, package
        assert modules <= listed, f"not in pure-cores: {sorted(modules - listed)}"
        assert f"callcenter.{package}" not in listed  # the package as a whole holds the adapter
