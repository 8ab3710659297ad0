"""`make run` twice on one database: the Makefile's set-up commands (db upgrade, demo seed
--city, prompts build) and then `hotline serve`, stopped with SIGTERM, twice in a row, on
SQLite and PostgreSQL. The second set-up adds nothing (users, SIP accounts, agents, cases,
history, calls and queue log, reference data) and the server starts healthy after each."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, _toml, query, spawn_server, stop_server
from tests.e2e.peers.ports import free_tcp_port, free_udp_port, free_udp_port_block

pytestmark = pytest.mark.e2e


def makefile_commands(target: str) -> list[list[str]]:
    """The `$(HOTLINE) …` lines of a Makefile target, as argument lists (`$(CONFIG_ARG)` left out)."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe, f"no {target} target in the Makefile"
    lines = [line.strip() for line in recipe.group(1).splitlines()]
    return [line.replace("$(CONFIG_ARG)", "").split()[1:] for line in lines if line.startswith("$(HOTLINE)")]


def snapshot(db_url: str) -> dict[str, list]:
    tables = ["ref_areas", "ref_grid_cells", "ref_places", "ref_departments", "ref_routing_rules",
              "ref_categories", "ref_holidays"]
    return {
        "users": sorted(query(db_url, "select username, role, department from users")),
        "sip_accounts": sorted(query(db_url, "select extension, ha1_md5 from sip_accounts")),
        "agents": sorted(query(db_url, "select username, extension from agent_profiles")),
        "cases": sorted(query(db_url, "select number, status, version from cases")),
        "history": query(db_url, "select count(*) from case_history"),
        "calls": query(db_url, "select count(*) from calls") + query(db_url, "select count(*) from queue_events"),
        "facts": query(db_url, "select count(*) from case_facts") + query(db_url, "select sum(n) from case_fact_rollup"),
        "reference": [query(db_url, f"select count(*) from {t}") for t in tables],
    }


def test_make_run_twice_keeps_everything_once(db_url, tmp_path, prompts_dir):
    prepare = makefile_commands("prepare")
    assert ["demo", "seed", "--city"] in prepare and ["db", "upgrade"] in prepare
    assert makefile_commands("run") == [["serve"]]
    prompts = tmp_path / "prompts"
    shutil.copytree(prompts_dir, prompts)
    sip_port, web_port, rtp = free_udp_port(), free_tcp_port(), free_udp_port_block(4)
    cfg = tmp_path / "hotline.toml"
    cfg.write_text(_toml({
        "sip": {"host": "127.0.0.1", "port": sip_port},
        "rtp": {"host": "127.0.0.1", "port_min": rtp, "port_max": rtp + 3},
        "web": {"host": "127.0.0.1", "port": web_port},
        "database": {"url": db_url},
        "storage": {"dir": str(tmp_path / "recordings")},
        "prompts": {"dir": str(prompts)},
        "stt": {"enabled": False},
    }), encoding="utf-8")
    hotline = str(REPO / ".venv" / "bin" / "hotline")

    snaps, outputs = [], []
    for _run in range(2):
        for args in prepare:
            proc = subprocess.run([hotline, *args, "--config", str(cfg)], cwd=REPO, capture_output=True, text=True,
                                  timeout=300)
            assert proc.returncode == 0, f"hotline {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
            outputs.append(proc.stdout)
        snaps.append(snapshot(db_url))
        server = spawn_server(tmp_path, cfg, sip_port, web_port, "")
        assert stop_server(server) == 0, server.log()

    first, second = snaps
    assert len(first["cases"]) >= 300 and len(first["users"]) >= 20 and len(first["sip_accounts"]) == 3
    assert first["calls"][0][0] > 100
    assert all(rows[0][0] > 0 for rows in first["reference"][:5]), first["reference"]
    assert second == first
    city = [line for out in outputs for line in out.splitlines() if line.startswith("demo city:")]
    assert len(city) == 2 and " 0 cases" in city[1] and " 0 users" in city[1], city
