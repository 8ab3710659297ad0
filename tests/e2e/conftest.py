"""End-to-end fixtures: a real `hotline serve` process on free loopback ports.

Prompts are generated once per test session (espeak-ng + sox) and shared; each server gets
its own database, recordings folder and ports, and is stopped (SIGTERM, then SIGKILL) after
the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from case_core.adapters.sqlalchemy_repo import sync_url
from tests.e2e.browser import launch
from tests.e2e.peers.ports import free_tcp_port, free_udp_port, free_udp_port_block

REPO = Path(__file__).resolve().parents[2]
HOTLINE = [sys.executable, "-m", "callcenter.cli"]


def run_hotline(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*HOTLINE, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"hotline {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory) -> Path:
    """Mandarin prompts built once for the whole session."""
    d = tmp_path_factory.mktemp("prompts")
    cfg = d / "prompts.toml"
    cfg.write_text(f'[prompts]\ndir = "{d}"\n', encoding="utf-8")
    run_hotline("prompts", "build", "--config", str(cfg), timeout=300)
    return d


@dataclass
class Server:
    proc: subprocess.Popen
    dir: Path
    config: Path
    sip_port: int
    web_url: str
    token: str
    output: list[str] = field(default_factory=list)

    @property
    def db_url(self) -> str:
        return tomllib.loads(self.config.read_text(encoding="utf-8"))["database"]["url"]

    @property
    def sip_target(self) -> tuple[str, int]:
        return ("127.0.0.1", self.sip_port)

    def api(self, path: str, *, token: str | None = None) -> tuple[int, object]:
        req = urllib.request.Request(self.web_url.rstrip("/") + path)
        req.add_header("Authorization", f"Bearer {token if token is not None else self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = resp.read()
                ctype = resp.headers.get("Content-Type", "")
                return resp.status, (json.loads(body) if "json" in ctype else body)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, body: dict, *, token: str | None = None) -> tuple[int, object]:
        req = urllib.request.Request(
            self.web_url.rstrip("/") + path, data=json.dumps(body).encode(), method="POST"
        )
        req.add_header("Authorization", f"Bearer {token if token is not None else self.token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw

    def token_for(self, username: str) -> str:
        return run_hotline("token", "create", username, "--config", str(self.config)).stdout.strip()

    def wait_for_cases(self, count: int = 1, timeout: float = 15.0, **match) -> list[dict]:
        cases: list = []
        for _poll in range(round(timeout / 0.2)):
            status, cases = self.api("/api/cases")
            if status == 200:
                hits = [c for c in cases if all(c.get(k) == v for k, v in match.items())]
                if len(hits) >= count and all(r["duration_s"] > 0 for c in hits for r in c["recordings"]):
                    return hits
            time.sleep(0.2)
        raise AssertionError(f"no {count} case(s) matching {match} within {timeout}s; have {cases}\n{self.log()}")

    def log(self) -> str:
        return "".join(self.output[-200:])

    def alive(self) -> bool:
        return self.proc.poll() is None


def _pump(stream, sink: list[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml(config: dict) -> str:
    """Write a config of tables and arrays of tables (e.g. [[trunks]]) back as TOML."""
    out = []
    for section, values in config.items():
        tables = values if isinstance(values, list) else [values]
        header = f"[[{section}]]" if isinstance(values, list) else f"[{section}]"
        for table in tables:
            out.append(header)
            out.extend(f"{key} = {_toml_value(v)}" for key, v in table.items())
    return "\n".join(out) + "\n"


def start_server(tmp: Path, prompts: Path, *, db_url: str | None = None, extra: str = "") -> Server:
    sip_port = free_udp_port()
    web_port = free_tcp_port()
    rtp_base = free_udp_port_block(8)
    cfg = tmp / "hotline.toml"
    config = {
        # The test peers share 127.0.0.1 and some fail digests on purpose: never banned there
        # (tests of the defence attack from other 127.0.0.x sources, or set allow = []).
        "sip": {"host": "127.0.0.1", "port": sip_port, "allow": ["127.0.0.1/32"]},
        "rtp": {"host": "127.0.0.1", "port_min": rtp_base, "port_max": rtp_base + 7},
        "web": {"host": "127.0.0.1", "port": web_port},
        "database": {"url": db_url or f"sqlite:///{tmp / 'hotline.db'}"},
        "storage": {"dir": str(tmp / "recordings")},
        "prompts": {"dir": str(prompts)},
        # Speech recognition costs seconds of CPU per call: only the tests about it turn it on.
        "stt": {"enabled": False, "models_dir": str(REPO / "var" / "models")},
    }
    # `extra` may name sections already written above ("[sip]\nring_s = 2"): merge key by key.
    for section, values in tomllib.loads(extra).items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    cfg.write_text(_toml(config), encoding="utf-8")
    run_hotline("demo", "seed", "--config", str(cfg))
    token = run_hotline("token", "create", "admin", "--config", str(cfg)).stdout.strip()
    return spawn_server(tmp, cfg, sip_port, web_port, token)


def spawn_server(tmp: Path, cfg: Path, sip_port: int, web_port: int, token: str) -> Server:
    """Start `hotline serve` on an existing config and wait until /healthz answers."""
    proc = subprocess.Popen(
        [*HOTLINE, "serve", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = Server(proc, tmp, cfg, sip_port, f"http://127.0.0.1:{web_port}/", token)
    threading.Thread(target=_pump, args=(proc.stdout, server.output), daemon=True).start()
    for _poll in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"hotline serve exited with {proc.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.web_url + "healthz", timeout=1) as resp:
                if json.loads(resp.read()) == {"status": "ok"}:
                    return server
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    stop_server(server)
    raise AssertionError(f"hotline serve did not become healthy:\n{server.log()}")


@contextmanager
def running_server(tmp: Path, prompts: Path, **kw) -> Iterator[Server]:
    """`start_server(tmp, prompts, **kw)`, stopped when the block ends (for fixtures)."""
    server = start_server(tmp, prompts, **kw)
    try:
        yield server
    finally:
        stop_server(server)


def restart_server(server: Server) -> Server:
    """Start a new process on the same config, database and recordings (after a stop or a crash)."""
    stop_server(server)
    return spawn_server(server.dir, server.config, server.sip_port, int(server.web_url.rsplit(":", 1)[1].strip("/")), server.token)


def stop_server(server: Server) -> int | None:
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=5)
    return server.proc.returncode


# The tests that matter most run on both databases: pass this as `indirect` parametrization to a
# server fixture (`@BOTH_DATABASES` on a test using `hotline`), or take `db_url` (tests/conftest.py)
# and give it to `start_server`. The rest run on SQLite only, to keep the suite's time in bounds.
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
BOTH_DATABASES = pytest.mark.parametrize("hotline", DATABASES, indirect=True)


def server_db_url(request, tmp_path: Path) -> str:
    """The database a server fixture should use: its indirect parameter, SQLite by default."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'hotline.db'}"


def query(db_url: str, sql: str, **params) -> list[tuple]:
    """Rows of one SQL query against a server's database (SQLite or PostgreSQL), read as an operator would."""
    engine = create_engine(sync_url(db_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


@pytest.fixture
def hotline(request, tmp_path, prompts_dir):
    """A running hotline on SQLite (or PostgreSQL when parametrized indirectly with BOTH_DATABASES)."""
    with running_server(tmp_path, prompts_dir, db_url=server_db_url(request, tmp_path)) as server:
        yield server


def carrier_trunk(port: int) -> str:
    """TOML for a trunk "carrier" on 127.0.0.1:`port`: outgoing calls (surveys, callbacks) reach the
    citizen's phone listening there."""
    return f'[[trunks]]\nname = "carrier"\nhost = "127.0.0.1"\nport = {port}\nallow = ["127.0.0.1"]\n'


def answer_consultation(server: Server, reporter: str, description: str, answer: str, **more) -> dict:
    """agent1 files a consultation from `reporter` (with `more` body fields) and answers it directly
    (direct_answer), which schedules its SMS and survey call. Returns the created case."""
    agent = server.token_for("agent1")
    status, created = server.post(
        "/api/cases", {"description": description, "kind": "consultation", "reporter_phone": reporter, **more},
        token=agent)
    assert status == 201, created
    case = created.get("case", created)
    status, body = server.post(f"/api/cases/{case['id']}/actions/direct_answer",
                               {"fields": {"answer": answer}, "expected_version": case["version"]}, token=agent)
    assert status == 200, body
    return case


# Always within business hours (option 1 reaches the queue); wrap-up lasts until the form
# is saved, so the agent's state after the call does not depend on how fast the test is.
DESK_CONFIG = (
    '[ivr]\nopen = "00:00"\nclose = "24:00"\nopen_days = "everyday"\n'
    "[acd]\nwrap_up_s = 600.0\n"
)


@pytest.fixture
def desk_hotline(tmp_path, prompts_dir):
    """A hotline whose queue answers at any hour (DESK_CONFIG)."""
    with running_server(tmp_path, prompts_dir, extra=DESK_CONFIG) as server:
        yield server


@pytest.fixture
def browser():
    """Debian chromium through Playwright, closed after the test."""
    with launch() as b:
        yield b
