"""A real Kannel for SMS tests: bearerbox + smsbox + fakesmsc (the phone network) on free loopback ports.

`start_kannel(dir, mo_url=…)` writes a kannel.conf, starts the three processes, waits until
the fake SMSC is online and returns a `Kannel`; `stop()` ends them (SIGTERM, then SIGKILL).
`received()` lists what the fake SMSC got, decoded: [(sender, receiver, text), …].
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.peers.ports import free_tcp_port

BEARERBOX = "/usr/sbin/bearerbox"
SMSBOX = "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
USERNAME = "hotline"
PASSWORD = "hotline-sms"
ADMIN_PASSWORD = "hotline-admin"


def kannel_available() -> bool:
    return all(os.access(p, os.X_OK) for p in (BEARERBOX, SMSBOX, FAKESMSC))


@dataclass
class Kannel:
    dir: Path
    admin_port: int
    sendsms_port: int
    smsc_port: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    fakesmsc_lines: list[str] = field(default_factory=list)

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    def status(self) -> str:
        url = f"http://127.0.0.1:{self.admin_port}/status.txt?password={ADMIN_PASSWORD}"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.read().decode("utf-8", "replace")

    def received(self) -> list[tuple[str, str, str]]:
        """Messages that reached the fake SMSC, as (sender, receiver, text)."""
        out = []
        for line in self.fakesmsc_lines:
            # fakesmsc prints what bearerbox sends it: "Got message N: <sender receiver type data>".
            if "Got message" not in line or "<" not in line:
                continue
            body = line[line.index("<") + 1 : line.rindex(">")]
            parts = body.split(" ", 3)
            if len(parts) < 4:
                continue
            sender, receiver, kind, data = parts
            # URL-encoded by fakesmsc, with "+" for a 0x20 byte.
            raw = urllib.parse.unquote_to_bytes(data.replace("+", " "))
            text = raw.decode("utf-16-be", "replace") if kind == "ucs-2" else raw.decode("latin-1")
            out.append((sender, receiver, text))
        return out

    def logs(self) -> str:
        chunks = []
        for name in ("bearerbox.log", "smsbox.log"):
            p = self.dir / name
            if p.exists():
                chunks.append(f"--- {name}\n" + p.read_text(errors="replace")[-6000:])
        chunks.append("--- fakesmsc\n" + "".join(self.fakesmsc_lines[-60:]))
        return "\n".join(chunks)

    def stop(self) -> None:
        for name in ("fakesmsc", "smsbox", "bearerbox"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def write_config(k: Kannel, smsbox_port: int, mo_url: str | None) -> Path:
    conf = f"""
group = core
admin-port = {k.admin_port}
admin-password = {ADMIN_PASSWORD}
admin-allow-ip = 127.0.0.1
smsbox-port = {smsbox_port}
box-allow-ip = 127.0.0.1
log-file = "{k.dir / 'bearerbox.log'}"
log-level = 0
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {k.smsc_port}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox_port}
sendsms-port = {k.sendsms_port}
log-file = "{k.dir / 'smsbox.log'}"
log-level = 0

group = sendsms-user
username = {USERNAME}
password = {PASSWORD}
user-allow-ip = 127.0.0.1
max-messages = 10
concatenation = true
"""
    if mo_url:
        conf += f"""
group = sms-service
keyword = default
get-url = "{mo_url}"
omit-empty = true
max-messages = 0
"""
    path = k.dir / "kannel.conf"
    path.write_text(conf, encoding="utf-8")
    return path


def _pump(stream, sink: list[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)


def start_kannel(directory: Path, *, mo_url: str | None = None, timeout: float = 30.0) -> Kannel:
    """Start bearerbox, smsbox and fakesmsc; return once the fake SMSC is online."""
    directory.mkdir(parents=True, exist_ok=True)
    k = Kannel(directory, free_tcp_port(), free_tcp_port(), free_tcp_port())
    smsbox_port = free_tcp_port()
    conf = write_config(k, smsbox_port, mo_url)

    def spawn(name: str, argv: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=directory, start_new_session=True, **kw)
        k.procs[name] = proc
        return proc

    try:
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spawn("bearerbox", [BEARERBOX, str(conf)], **quiet)
        _wait(lambda: _admin_up(k), timeout, k, "bearerbox admin port")
        spawn("smsbox", [SMSBOX, str(conf)], **quiet)
        # fakesmsc with no messages to generate reads MO lines from stdin and prints MT ones.
        fake = spawn(
            "fakesmsc", [FAKESMSC, "-H", "127.0.0.1", "-r", str(k.smsc_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=_pump, args=(fake.stdout, k.fakesmsc_lines), daemon=True).start()
        _wait(lambda: _online(k), timeout, k, "fake SMSC online and smsbox connected")
    except BaseException:
        k.stop()
        raise
    return k


def _admin_up(k: Kannel) -> bool:
    try:
        k.status()
        return True
    except (urllib.error.URLError, OSError):
        return False


def _online(k: Kannel) -> bool:
    try:
        status = k.status()
    except (urllib.error.URLError, OSError):
        return False
    return "online" in status.split("SMSC connections", 1)[-1] and "smsbox:" in status.split("Box connections", 1)[-1]


def _wait(check, timeout: float, k: Kannel, what: str) -> None:
    for _poll in range(round(timeout / 0.2)):
        for name, proc in k.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode} while waiting for {what}\n{k.logs()}")
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"Kannel: no {what} within {timeout}s\n{k.logs()}")
