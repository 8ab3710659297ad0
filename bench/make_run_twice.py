"""How long `make run` takes to be up the first and the second time on one database.

    .venv/bin/python bench/make_run_twice.py [--sip-port 25360] [--web-port 25380] [--rtp-port 25400]
        [--prompts var/prompts] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Runs the Makefile's own set-up lines (the `$(HOTLINE) …` lines of its `prepare` target: db
upgrade, demo seed --city, prompts build, extract train --if-changed) and then `hotline serve`
until `GET /healthz` answers, stops it with SIGTERM, and does it all again on the same
database. The first round (empty database: migrations, the whole demo city) is the baseline
for the second (everything already there: each step must find nothing to do). The apt, venv,
npm and TTS steps of `make setup` are left out (they are no-ops on a set-up machine and cost
the same both times). Prompts are copied from --prompts so that their build is a no-op too
(an empty folder would make the first round build 235 prompts). SQLite in a temporary
folder, or a fresh PostgreSQL database with --pg (dropped afterwards). Prints one JSON
document: seconds per step and to healthy, per round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOTLINE = ROOT / ".venv" / "bin" / "hotline"


def prepare_lines() -> list[list[str]]:
    """The `$(HOTLINE) …` lines of the Makefile's `prepare` target, `$(CONFIG_ARG)` left out."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^prepare:.*\n((?:\t.*\n)+)", text, re.M)
    if not recipe:
        raise SystemExit("no prepare target in the Makefile")
    return [line.strip().replace("$(CONFIG_ARG)", "").split()[1:]
            for line in recipe.group(1).splitlines() if line.strip().startswith("$(HOTLINE)")]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return json.loads(resp.read()) == {"status": "ok"}
    except OSError:
        return False


def one_round(cfg: Path, web_port: int) -> dict:
    steps: dict[str, float] = {}
    started = time.perf_counter()
    for args in prepare_lines():
        t = time.perf_counter()
        proc = subprocess.run([str(HOTLINE), *args, "--config", str(cfg)], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"hotline {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        steps[" ".join(args)] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    server = subprocess.Popen([str(HOTLINE), "serve", "--config", str(cfg)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _poll in range(1200):
            if server.poll() is not None:
                raise SystemExit(f"hotline serve exited with {server.returncode}")
            if healthy(f"http://127.0.0.1:{web_port}/healthz"):
                break
            time.sleep(0.1)
        else:
            raise SystemExit("hotline serve never became healthy")
        steps["serve until /healthz"] = round(time.perf_counter() - t, 2)
        steps["total"] = round(time.perf_counter() - started, 2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    steps["serve exit status after SIGTERM"] = server.returncode
    return steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sip-port", type=int, default=25360)
    ap.add_argument("--web-port", type=int, default=25380)
    ap.add_argument("--rtp-port", type=int, default=25400)
    ap.add_argument("--prompts", default=str(ROOT / "var" / "prompts"), help="built prompts to copy")
    ap.add_argument("--pg", help="PostgreSQL admin URL: run on a fresh database there instead of SQLite")
    args = ap.parse_args()
    made = None
    with tempfile.TemporaryDirectory(prefix="hotline-make-run-") as tmp:
        folder = Path(tmp)
        if args.pg:
            import psycopg2

            made = f"hotline_bench_{uuid.uuid4().hex[:10]}"
            admin = psycopg2.connect(args.pg)
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{made}"')
            admin.close()
            db = f"{args.pg.rsplit('/', 1)[0]}/{made}"
        else:
            db = f"sqlite:///{folder / 'hotline.db'}"
        if Path(args.prompts).is_dir():
            shutil.copytree(args.prompts, folder / "prompts")
        cfg = folder / "hotline.toml"
        cfg.write_text(
            f'[sip]\nhost = "127.0.0.1"\nport = {args.sip_port}\ntls_port = {args.sip_port + 1}\n'
            f'[rtp]\nhost = "127.0.0.1"\nport_min = {args.rtp_port}\nport_max = {args.rtp_port + 99}\n'
            f'[web]\nhost = "127.0.0.1"\nport = {args.web_port}\n'
            f'[database]\nurl = "{db}"\n[storage]\ndir = "{folder / "recordings"}"\n'
            f'[prompts]\ndir = "{folder / "prompts"}"\n[stt]\nmodels_dir = "{folder / "models"}"\n',
            encoding="utf-8")
        load = os.getloadavg()
        try:
            first = one_round(cfg, args.web_port)
            second = one_round(cfg, args.web_port)
        finally:
            if made:
                import psycopg2

                admin = psycopg2.connect(args.pg)
                admin.autocommit = True
                with admin.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{made}" WITH (FORCE)')
                admin.close()
    result = {"database": "postgresql" if args.pg else "sqlite", "loadavg_at_start": [round(x, 2) for x in load],
              "first_run_baseline": first, "second_run": second,
              "second_over_first_total": round(second["total"] / first["total"], 3)}
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
