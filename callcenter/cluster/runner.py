"""`make cluster`: Kamailio in front of N hotline nodes on one PostgreSQL, on one machine.

    python -m callcenter.cluster.runner [--nodes 2] [--sip-port 5060] [--node-port 5071]
                                        [--web-port 8081] [--database URL] [--dir var/cluster]

Starts (and on Ctrl-C stops, in reverse order) everything a city needs to try the cluster:

1. PostgreSQL at 127.0.0.1:5432 (`.ci/ensure-postgres.sh`; a no-op when it answers) and the
   database (default `hotline_cluster`), migrated, with the demo city; Kamailio's own
   tables (`version`, `location`) loaded from Debian's kamailio-postgres-modules once.
2. N `hotline serve` nodes on 127.0.0.1 (SIP node-port, node-port+1 …; web web-port,
   web-port+1 …), each with `[cluster] node_id = "node-1"` … and `proxy` = Kamailio,
   sharing the database, one recordings folder and one prompts folder.
3. Kamailio (`sip_config/kamailio/kamailio.cfg`) on the public SIP port, its dispatcher
   list naming the nodes.

It prints where to call and where to browse. `Cluster` is also what the end-to-end tests
and `bench/cluster_bench.py` start, with free ports and a fresh database.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = REPO / "sip_config" / "kamailio" / "kamailio.cfg"
KAMAILIO_SQL = Path("/usr/share/kamailio/postgres")
HOTLINE = [sys.executable, "-m", "callcenter.cli"]

__all__ = ["Cluster", "Node", "kamailio_db_url", "main"]


def kamailio_db_url(url: str) -> str:
    """SQLAlchemy's postgresql[+driver]://… as Kamailio's db_postgres wants it (postgres://…)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgresql"):
        raise ValueError(f"a cluster needs a PostgreSQL database, got {url!r}")
    return f"postgres://{rest}"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(v)


def _toml(config: dict) -> str:
    out = []
    for section, values in config.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    return "\n".join(out) + "\n"


def _pump(stream, sink: list[str], echo: str | None) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
        if len(sink) > 5000:
            del sink[:1000]
        if echo is not None:
            sys.stdout.write(f"[{echo}] {line}")


@dataclass
class Node:
    node_id: str
    sip_port: int
    web_port: int
    config: Path
    proc: subprocess.Popen | None = None
    output: list[str] = field(default_factory=list)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return "".join(self.output[-200:])


@dataclass
class Cluster:
    """Kamailio + N nodes; `start()` then `stop()` (or use it as a context manager)."""

    dir: Path
    db_url: str
    node_ports: list[tuple[int, int, int]]  # (sip, web, first RTP port) per node
    sip_port: int = 5060
    prompts_dir: Path | None = None
    rtp_ports: int = 200  # RTP ports per node, from its first RTP port
    ping_s: int = 1
    fr_ms: int = 2000
    # pike: requests per source per 2 s before Kamailio bans it. On one machine every
    # caller, phone and test peer is 127.0.0.1: far above the template's 200.
    pike_reqs: int = 5000
    echo: bool = False
    extra: dict = field(default_factory=dict)  # more config, merged section by section into every node
    seed_city: bool = True
    nodes: list[Node] = field(default_factory=list)
    kamailio: subprocess.Popen | None = None
    kamailio_output: list[str] = field(default_factory=list)

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def __enter__(self) -> "Cluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- set-up
    def _run(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run([*HOTLINE, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"hotline {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def write_configs(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        storage = self.dir / "recordings"
        prompts = self.prompts_dir or REPO / "var" / "prompts"
        self.nodes = []
        for i, (sip, web, rtp) in enumerate(self.node_ports, start=1):
            node_id = f"node-{i}"
            config = {
                "sip": {"host": "127.0.0.1", "port": sip},
                "rtp": {"host": "127.0.0.1", "port_min": rtp, "port_max": rtp + self.rtp_ports - 1},
                "web": {"host": "127.0.0.1", "port": web},
                "database": {"url": self.db_url},
                "storage": {"dir": str(storage)},
                "prompts": {"dir": str(prompts)},
                "cluster": {"node_id": node_id, "proxy": self.proxy},
                "metrics": {"node": node_id},
            }
            for section, values in self.extra.items():
                config.setdefault(section, {}).update(values)
            path = self.dir / f"{node_id}.toml"
            path.write_text(_toml(config), encoding="utf-8")
            self.nodes.append(Node(node_id, sip, web, path))
        (self.dir / "dispatcher.list").write_text(
            "# written by callcenter.cluster.runner: the hotline nodes (set 1)\n"
            + "".join(f"1 sip:127.0.0.1:{n.sip_port} 0 0\n" for n in self.nodes), encoding="utf-8")

    def prepare_database(self) -> None:
        first = str(self.nodes[0].config)
        self._run("db", "upgrade", "--config", first)
        self._run("demo", "seed", *(["--city"] if self.seed_city else []), "--config", first)
        if self.prompts_dir is None:
            self._run("prompts", "build", "--config", first, timeout=1800)
        self._load_kamailio_schema()

    def _load_kamailio_schema(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.db_url.replace("postgresql+psycopg2://", "postgresql://"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass('public.version'), to_regclass('public.location')")
                has_version, has_location = cur.fetchone()
                if has_version is None:
                    cur.execute((KAMAILIO_SQL / "standard-create.sql").read_text())
                if has_location is None:
                    cur.execute((KAMAILIO_SQL / "usrloc-create.sql").read_text())
        finally:
            conn.close()

    # ---------------------------------------------------------------- processes
    def start_kamailio(self) -> None:
        if shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists():
            raise RuntimeError("kamailio is not installed (make setup: .ci/install-system.sh)")
        run_dir = self.dir / "kamailio"
        run_dir.mkdir(exist_ok=True)
        defines = {
            "LISTEN": f"udp:127.0.0.1:{self.sip_port}",
            "DBURL": json.dumps(kamailio_db_url(self.db_url)),
            "DSLIST": json.dumps(str(self.dir / "dispatcher.list")),
            "CTLSOCK": json.dumps(f"unix:{run_dir / 'kamailio_ctl'}"),
            "PING_S": str(self.ping_s),
            "FR_MS": str(self.fr_ms),
            "PIKE_REQS": str(self.pike_reqs),
        }
        args = ["kamailio", "-DD", "-E", "-f", str(KAMAILIO_CFG), "-Y", str(run_dir), "-P", str(run_dir / "pid")]
        for k, v in defines.items():
            args += ["-A", f"{k}={v}"]
        self.kamailio = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         start_new_session=True)
        threading.Thread(target=_pump, args=(self.kamailio.stdout, self.kamailio_output,
                                             "kamailio" if self.echo else None), daemon=True).start()
        for _ in range(100):
            if self.kamailio.poll() is not None:
                raise RuntimeError(f"kamailio exited with {self.kamailio.returncode}:\n{''.join(self.kamailio_output)}")
            if any("dispatcher" in line or "INFO: <core> [main.c" in line for line in self.kamailio_output) \
                    or _udp_bound(self.sip_port):
                return
            time.sleep(0.1)

    def start_node(self, node: Node) -> None:
        node.output = []
        node.proc = subprocess.Popen([*HOTLINE, "serve", "--config", str(node.config)], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        threading.Thread(target=_pump, args=(node.proc.stdout, node.output, node.node_id if self.echo else None),
                         daemon=True).start()

    def wait_healthy(self, node: Node, tries: int = 600) -> None:
        for _ in range(tries):
            if node.proc.poll() is not None:
                raise RuntimeError(f"{node.node_id} exited with {node.proc.returncode}:\n{node.log()}")
            try:
                with urllib.request.urlopen(node.web_url + "healthz", timeout=1) as resp:
                    if json.loads(resp.read()) == {"status": "ok"}:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{node.node_id} did not become healthy:\n{node.log()}")

    def start(self, *, prepare: bool = True) -> None:
        self.write_configs()
        try:
            if prepare:
                self.prepare_database()
            for node in self.nodes:
                self.start_node(node)
            for node in self.nodes:
                self.wait_healthy(node)
            self.start_kamailio()
        except BaseException:
            self.stop()
            raise

    def kill_node(self, node: Node) -> None:
        """kill -9: no BYEs, no clean-up (the crash a cluster must survive)."""
        if node.alive():
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(timeout=10)

    def stop_node(self, node: Node) -> None:
        if node.alive():
            os.killpg(node.proc.pid, signal.SIGTERM)
            try:
                node.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait(timeout=5)

    def stop(self) -> None:
        if self.kamailio is not None and self.kamailio.poll() is None:
            os.killpg(self.kamailio.pid, signal.SIGTERM)
            try:
                self.kamailio.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.kamailio.pid, signal.SIGKILL)
                self.kamailio.wait(timeout=5)
        for node in self.nodes:
            self.stop_node(node)


def _udp_bound(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _ensure_database(admin_url: str, name: str) -> str:
    import psycopg2

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--sip-port", type=int, default=5060, help="Kamailio's public SIP port")
    p.add_argument("--node-port", type=int, default=5071, help="first node's SIP port (then +1 …)")
    p.add_argument("--web-port", type=int, default=8081, help="first node's web port (then +1 …)")
    p.add_argument("--database", default="", help="PostgreSQL URL (default: hotline_cluster at 127.0.0.1:5432)")
    p.add_argument("--dir", default=str(REPO / "var" / "cluster"), help="configs, recordings, Kamailio's files")
    p.add_argument("--quiet", action="store_true", help="do not echo the nodes' and Kamailio's logs")
    args = p.parse_args(argv)
    if args.nodes < 1:
        p.error("--nodes: at least 1")
    db_url = args.database
    if not db_url:
        subprocess.run(["bash", str(REPO / ".ci" / "ensure-postgres.sh")], check=True)
        db_url = _ensure_database("postgresql://postgres@127.0.0.1:5432/postgres", "hotline_cluster")
    ports = [(args.node_port + i, args.web_port + i, 21000 + 200 * i) for i in range(args.nodes)]
    cluster = Cluster(Path(args.dir), db_url, ports, sip_port=args.sip_port, echo=not args.quiet)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        cluster.start()
        print()
        print(f"SIP:  sip:12319@127.0.0.1:{args.sip_port}   (Kamailio; agents' phones register here too)")
        for node in cluster.nodes:
            print(f"Web:  {node.web_url}   ({node.node_id}, SIP 127.0.0.1:{node.sip_port})")
        print(f"Nodes: GET {cluster.nodes[0].web_url}api/cluster · hotline cluster drain NODE "
              f"--config {cluster.nodes[0].config}")
        print("Ctrl-C stops everything.", flush=True)
        while not stop.is_set():
            stop.wait(1)
            for node in cluster.nodes:
                if node.proc is not None and node.proc.poll() is not None and not getattr(node, "_told", False):
                    print(f"{node.node_id} exited with {node.proc.returncode}", flush=True)
                    node._told = True  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping Kamailio and the nodes …", flush=True)
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
