"""Run the real SIP peers (sipp, baresip, pyVoIP) against a server on 127.0.0.1.

Every process started here runs in its own process group and is killed (group-wide) on
timeout, on stop() and when a context manager exits, so a failing test leaves nothing
running.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue

from .pcap import read_pcap_udp
from .ports import free_tcp_port, free_udp_port, free_udp_port_block

__all__ = [
    "SCENARIO_DIR",
    "SippResult",
    "run_sipp",
    "SippUas",
    "pcap_duration",
    "Baresip",
    "BaresipError",
    "PyVoipPhone",
    "kill_group",
    "pcm16_to_u8",
    "u8_to_pcm16",
]

SCENARIO_DIR = Path(__file__).with_name("sipp")
_LOOPBACK = "127.0.0.1"


def kill_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a process started with start_new_session=True: SIGTERM to its group, then
    SIGKILL after ``grace`` seconds. Safe to call twice."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------------- sipp


@dataclass(frozen=True)
class SippResult:
    """Outcome of one sipp run. returncode 0: every call succeeded; 1: a call failed;
    -9: killed on timeout. log_text holds sipp's message trace and error log."""

    returncode: int
    stdout: str
    stderr: str
    log_text: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def messages(self, start_line: str = "") -> list[str]:
        """The SIP messages sipp sent or received (from its -trace_msg log) whose first
        line starts with start_line, e.g. "BYE" or "SIP/2.0 200", in order."""
        found = []
        for chunk in re.split(r"^-{5,} .*$", self.log_text, flags=re.M):
            lines = chunk.strip("\r\n").splitlines()
            if lines and lines[0].startswith(("UDP message", "TCP message", "TLS message")):
                text = "\n".join(lines[1:]).strip("\r\n")
                if text.startswith(start_line):
                    found.append(text)
        return found


def pcap_duration(path) -> float:
    """Seconds from the first to the end of the last packet of an RTP pcap."""
    times = [t for t, _ in read_pcap_udp(path)]
    return (times[-1] - times[0] + 0.02) if times else 0.0


def _scenario_path(scenario: str | os.PathLike) -> Path:
    path = Path(scenario)
    if path.is_file():
        return path.resolve()
    name = path.name if path.suffix == ".xml" else f"{path.name}.xml"
    found = SCENARIO_DIR / name
    if not found.is_file():
        raise FileNotFoundError(f"no sipp scenario {scenario!r} (looked in {SCENARIO_DIR})")
    return found


def run_sipp(scenario: str | os.PathLike, *, target: tuple[str, int],
             service: str = "12319", caller: str = "13800138000",
             pcap: str | os.PathLike | None = None, timeout: float = 30,
             extra: Sequence[str] = (), pause_s: float | None = None,
             keys: dict[str, str] | None = None) -> SippResult:
    """Run one call of a sipp UAC scenario (a name in SCENARIO_DIR such as "call_report",
    or a path) against target and wait for it to finish.

    The From user is ``caller`` (scenario keyword [caller]); ``pcap`` is what
    play_pcap_audio plays ([pcap]); a scenario's bare <pause/> lasts ``pause_s``
    (default: the pcap's length + 1 s). sipp gets a free SIP port and a free media port
    block on 127.0.0.1, and is killed if it runs longer than ``timeout`` seconds.
    """
    if shutil.which("sipp") is None:
        raise RuntimeError("sipp is not installed (.ci/install-system.sh: sip-tester)")
    path = _scenario_path(scenario)
    text = path.read_text(encoding="latin-1")
    if "[pcap]" in text and pcap is None:
        raise ValueError(f"{path.name} plays a pcap: pass pcap=")
    if pause_s is None:
        pause_s = (pcap_duration(pcap) + 1.0) if pcap is not None else 1.0
    host, port = target

    for attempt in range(3):  # a free port can be taken before sipp binds it
        with tempfile.TemporaryDirectory(prefix="sipp-") as work:
            messages, errors = Path(work, "messages.log"), Path(work, "errors.log")
            cmd = ["sipp", f"{host}:{port}", "-sf", str(path), "-s", service,
                   "-key", "caller", caller,
                   "-i", _LOOPBACK, "-mi", _LOOPBACK,
                   "-p", str(free_udp_port()), "-mp", str(free_udp_port_block(4)),
                   "-m", "1", "-l", "1", "-nostdin", "-aa",
                   "-d", str(int(pause_s * 1000)),
                   "-timeout", f"{max(1, int(timeout))}s", "-timeout_error",
                   "-trace_msg", "-message_file", str(messages),
                   "-trace_err", "-error_file", str(errors)]
            if pcap is not None:
                cmd += ["-key", "pcap", str(Path(pcap).resolve())]
            for name, value in (keys or {}).items():
                cmd += ["-key", name, str(value)]
            cmd += list(extra)
            proc = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, text=True, errors="replace")
            try:
                stdout, stderr = proc.communicate(timeout=timeout + 5)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                kill_group(proc, grace=0.5)
                stdout, stderr = proc.communicate()
                code = -9
            finally:
                kill_group(proc, grace=0.5)
            log = "".join(f.read_text(errors="replace") for f in (messages, errors)
                          if f.exists())
        if "Unable to bind" not in stderr + log or attempt == 2:
            return SippResult(code, stdout, stderr, log)
    raise AssertionError("unreachable")


class SippUas:
    """A sipp UAS scenario (e.g. "uas_sink") listening on a free 127.0.0.1 port for
    ``calls`` calls; use as a context manager, then wait() for its SippResult.

        with SippUas("uas_sink", keys={"sink_port": 40000}) as uas:
            run_sipp("call_report", target=("127.0.0.1", uas.port), pcap=...)
            assert uas.wait(10).ok
    """

    def __init__(self, scenario: str | os.PathLike, *, keys: dict[str, str] | None = None,
                 calls: int = 1, timeout: float = 30, extra: Sequence[str] = ()):
        self.path = _scenario_path(scenario)
        self.port = free_udp_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="sipp-uas-")
        work = Path(self._tmp.name)
        self._logs = (work / "messages.log", work / "errors.log")
        cmd = ["sipp", "-sf", str(self.path), "-i", _LOOPBACK, "-mi", _LOOPBACK,
               "-p", str(self.port), "-mp", str(free_udp_port_block(4)),
               "-m", str(calls), "-nostdin",
               "-timeout", f"{max(1, int(timeout))}s", "-timeout_error",
               "-trace_msg", "-message_file", str(self._logs[0]),
               "-trace_err", "-error_file", str(self._logs[1])]
        for name, value in (keys or {}).items():
            cmd += ["-key", name, str(value)]
        self._cmd = cmd + list(extra)
        self._proc: subprocess.Popen | None = None
        self._result: SippResult | None = None

    def __enter__(self) -> SippUas:
        self._proc = subprocess.Popen(self._cmd, cwd=self._tmp.name,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True,
                                      text=True, errors="replace")
        time.sleep(0.3)  # sipp binds its socket within a few ms; no readiness signal
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._tmp.cleanup()

    def wait(self, timeout: float = 10) -> SippResult:
        """Wait for sipp to finish its calls (killing it after timeout: returncode -9)."""
        if self._result is None:
            try:
                stdout, stderr = self._proc.communicate(timeout=timeout)
                code = self._proc.returncode
            except subprocess.TimeoutExpired:
                kill_group(self._proc, grace=0.5)
                stdout, stderr = self._proc.communicate()
                code = -9
            log = "".join(f.read_text(errors="replace") for f in self._logs if f.exists())
            self._result = SippResult(code, stdout, stderr, log)
        return self._result

    def stop(self) -> None:
        if self._proc is not None:
            kill_group(self._proc, grace=0.5)
            if self._result is None:
                self.wait(1)


# ------------------------------------------------------------------------ baresip


class BaresipError(RuntimeError):
    """baresip did not start, or a control command failed."""


def _write_silence(path: Path, seconds: float = 30.0) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * int(8000 * seconds))


class Baresip:
    """A baresip softphone on 127.0.0.1, driven through its ctrl_tcp control interface.

    Its microphone is ``audio_wav`` (any WAV; converted to 8 kHz mono with sox; silence if
    None). What it hears is dumped by the sndfile module into ``record_dir``
    (``received_wav()``). Without ``registrar`` it is a plain caller with From user
    ``user``; with ``registrar=(host, port)`` it REGISTERs as ``user`` (digest password
    ``password``) and, with ``answer_auto=True``, answers calls at once (agent phone).

        with Baresip(audio_wav="speech.wav") as phone:
            phone.dial("sip:12319@127.0.0.1:5080")
            phone.wait_event("CALL_ESTABLISHED")
            phone.send_dtmf("1")
    """

    def __init__(self, *, audio_wav: str | os.PathLike | None = None,
                 user: str = "13900139000", registrar: tuple[str, int] | None = None,
                 password: str | None = None, answer_auto: bool = False,
                 regint: int = 60, sip_trace: bool = True, start_timeout: float = 10.0):
        self.user = user
        self.registrar = registrar
        self.password = password
        self.answer_auto = answer_auto
        self.regint = regint
        self.sip_trace = sip_trace
        self.start_timeout = start_timeout
        self._audio_wav = audio_wav
        self._tmp = tempfile.TemporaryDirectory(prefix="baresip-")
        self.config_dir = Path(self._tmp.name)
        self.record_dir = self.config_dir / "recordings"
        self.log_path = self.config_dir / "baresip.log"
        self.sip_port = 0
        self.ctrl_port = 0
        self.events: list[dict] = []
        self._event_queue: Queue[dict] = Queue()
        self._responses: Queue[dict] = Queue()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.RLock()
        self._closing = False

    # -- configuration
    def _account_line(self) -> str:
        params = [f"answermode={'auto' if self.answer_auto else 'manual'}",
                  "audio_codecs=pcmu,pcma", "dtmfmode=rtpevent"]
        if self.registrar is None:
            aor = f"sip:{self.user}@{_LOOPBACK}"
            params.append("regint=0")
        else:
            host, port = self.registrar
            aor = f"sip:{self.user}@{host}:{port}"
            params.append(f"regint={self.regint}")
            if self.password is not None:
                params += [f"auth_user={self.user}", f"auth_pass={self.password}"]
        return f"<{aor}>;" + ";".join(params) + "\n"

    def _write_config(self) -> None:
        self.record_dir.mkdir(exist_ok=True)  # a retried start writes the config again
        mic = self.config_dir / "mic.wav"
        if self._audio_wav is None:
            _write_silence(mic)
        else:
            subprocess.run(["sox", "-q", str(self._audio_wav), "-b", "16", "-e",
                            "signed-integer", "-r", "8000", "-c", "1", str(mic)],
                           check=True, capture_output=True, timeout=60)
        rtp = free_udp_port_block(8)
        config = f"""\
# Written by tests/e2e/peers/runner.py for one test.
poll_method\t\tepoll
sip_listen\t\t{_LOOPBACK}:{self.sip_port}
net_interface\t\t{_LOOPBACK}
audio_player\t\taubridge,sink
audio_source\t\taufile,{mic}
audio_alert\t\taubridge,sink
ausrc_srate\t\t8000
auplay_srate\t\t8000
ausrc_channels\t\t1
auplay_channels\t\t1
rtp_ports\t\t{rtp}-{rtp + 7}
rtp_timeout\t\t0
snd_path\t\t{self.record_dir}
ctrl_tcp_listen\t\t{_LOOPBACK}:{self.ctrl_port}
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\taubridge.so
module\t\t\tsndfile.so
module_app\t\taccount.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
"""
        (self.config_dir / "config").write_text(config)
        (self.config_dir / "accounts").write_text(self._account_line())
        (self.config_dir / "contacts").write_text("")

    # -- life cycle
    def __enter__(self) -> Baresip:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if shutil.which("baresip") is None:
            raise RuntimeError("baresip is not installed (.ci/install-system.sh)")
        # baresip also binds TCP/TLS next to its UDP port; a port picked free can be taken by
        # another test by the time it binds ("Address already in use"): pick again, a few times.
        for attempt in range(4):
            self.sip_port, self.ctrl_port = free_udp_port(), free_tcp_port()
            self._write_config()
            cmd = ["baresip", "-f", str(self.config_dir)] + (["-s"] if self.sip_trace else [])
            with open(self.log_path, "wb") as log:
                self._proc = subprocess.Popen(cmd, cwd=self.config_dir, stdin=subprocess.DEVNULL,
                                              stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True)
            try:
                self._connect(self.start_timeout)
            except BaresipError:
                if attempt < 3 and "Address already in use" in self.log_text():
                    continue
                self.stop()
                raise
            break
        try:
            self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                            name="baresip-ctrl")
            self._reader.start()
        except BaseException:
            self.stop()
            raise

    def _connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise BaresipError(f"baresip exited ({self._proc.returncode}):\n"
                                   + self.log_text())
            try:
                self._sock = socket.create_connection((_LOOPBACK, self.ctrl_port), 0.5)
                self._sock.settimeout(None)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BaresipError("baresip's ctrl_tcp is not listening:\n"
                                       + self.log_text()) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Quit baresip (kill its process group if it lingers) and close the control
        connection. The config dir (and recordings) stays until the object is collected
        or cleanup() is called."""
        self._closing = True
        if self._proc is not None and self._proc.poll() is None and self._sock is not None:
            try:
                self._send({"command": "quit", "params": "", "token": "quit"})
                self._proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self._proc is not None:
            kill_group(self._proc, grace=2.0)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def cleanup(self) -> None:
        """Remove the config dir with its recordings and log."""
        self.stop()
        self._tmp.cleanup()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """baresip's stdout and stderr so far (SIP trace included with sip_trace), without
        the menu's once-a-tick call status lines."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return re.sub(r"\n?\[\d+:\d\d:\d\d\] audio=[^\n]*\n?", "\n", text)

    # -- control interface: netstrings of JSON ("<len>:<json>,")
    def _send(self, message: dict) -> None:
        data = json.dumps(message).encode()
        with self._lock:
            self._sock.sendall(b"%d:%s," % (len(data), data))

    def _read_loop(self) -> None:
        # baresip 1.0.0's ctrl_tcp drops the connection after a "hangup" command (its
        # response and the CALL_CLOSED event are lost): reconnect while baresip runs.
        buf = b""
        while True:
            sock = self._sock
            try:
                chunk = sock.recv(65536) if sock is not None else b""
            except OSError:
                chunk = b""
            if not chunk:
                if self._closing or not self.running:
                    return
                buf = b""
                try:
                    with self._lock:
                        if self._sock is sock:
                            self._connect(3.0)
                except BaresipError:
                    return
                continue
            buf += chunk
            while True:
                head, sep, rest = buf.partition(b":")
                if not sep or not head.isdigit():
                    break
                size = int(head)
                if len(rest) < size + 1:
                    break
                payload, buf = rest[:size], rest[size + 1:]
                try:
                    message = json.loads(payload)
                except ValueError:
                    continue
                if message.get("response"):
                    self._responses.put(message)
                else:
                    self.events.append(message)
                    self._event_queue.put(message)

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict:
        """Run a baresip command (as typed after "/" in its console) and return its
        response: {"response": true, "ok": bool, "data": str, "token": ...}."""
        if self._sock is None:
            raise BaresipError("baresip is not running")
        token = f"{command}-{time.monotonic_ns()}"
        self._send({"command": command, "params": params, "token": token})
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self._responses.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                raise BaresipError(f"no response to {command!r}:\n{self.log_text()}") from None
            if response.get("token") == token:
                return response

    def wait_event(self, event_type: str, timeout: float = 10.0) -> dict:
        """Wait for the next event of a type such as "CALL_ESTABLISHED", "CALL_CLOSED",
        "CALL_INCOMING", "REGISTER_OK", "REGISTER_FAIL"; earlier events are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._event_queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                seen = [e.get("type") for e in self.events]
                raise BaresipError(f"no {event_type} within {timeout}s (events: {seen})\n"
                                   + self.log_text()[-4000:]) from None
            if event.get("type") == event_type:
                return event

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """Wait until baresip's log matches the regular expression pattern. Use it for
        what happens before the control connection is up, e.g. the first REGISTER's
        outcome (its REGISTER_OK/REGISTER_FAIL event is emitted before we connect):
        ``wait_log(r"reg: .*: 501")`` or ``wait_log(r"200 OK \\(")``."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log_text())
            if match:
                return match
            if time.monotonic() > deadline or not self.running:
                raise BaresipError(f"log never matched {pattern!r}:\n"
                                   + self.log_text()[-4000:])
            time.sleep(0.1)

    def dial(self, uri: str) -> dict:
        """Call uri (e.g. "sip:12319@127.0.0.1:5080")."""
        return self._checked("dial", uri)

    def accept(self) -> dict:
        """Answer the ringing incoming call (not needed with answer_auto)."""
        return self._checked("accept")

    def send_dtmf(self, digits: str, gap_s: float = 0.3) -> None:
        """Send digits as RFC 4733 telephone-events, one at a time, gap_s apart."""
        for digit in digits:
            self._checked("sndcode", digit)
            time.sleep(gap_s)

    def hangup(self) -> None:
        """Hang up the current call (BYE when established, CANCEL while ringing).

        baresip 1.0.0 answers this command by closing the control connection, so there is
        no response to check and this side gets no CALL_CLOSED event; the peer does."""
        old = self._sock
        token = f"hangup-{time.monotonic_ns()}"
        self._send({"command": "hangup", "params": "", "token": token})
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and self._sock is old:
            try:  # a later baresip keeps the connection and answers
                if self._responses.get(timeout=0.05).get("token") == token:
                    return
            except Empty:
                pass

    def _checked(self, command: str, params: str = "") -> dict:
        response = self.command(command, params)
        if not response.get("ok", False):
            raise BaresipError(f"{command} {params!r} failed: {response.get('data')!r}")
        return response

    def received_wav(self) -> Path | None:
        """The WAV of the audio baresip received and decoded in its last call (sndfile
        writes it when the call's audio stops), or None."""
        files = sorted(self.record_dir.glob("*-dec.wav"), key=lambda p: p.stat().st_mtime)
        return files[-1] if files else None

    def sent_wav(self) -> Path | None:
        """The WAV of the audio baresip encoded and sent in its last call, or None."""
        files = sorted(self.record_dir.glob("*-enc.wav"), key=lambda p: p.stat().st_mtime)
        return files[-1] if files else None


# ------------------------------------------------------------------------- pyVoIP


def pcm16_to_u8(pcm: bytes) -> bytes:
    """16-bit signed little-endian PCM to the 8-bit unsigned audio pyVoIP writes."""
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    return ((samples >> 8) + 128).astype(np.uint8).tobytes()


def u8_to_pcm16(data: bytes) -> bytes:
    """pyVoIP's 8-bit unsigned audio back to 16-bit signed little-endian PCM."""
    import numpy as np

    samples = np.frombuffer(data, dtype=np.uint8).astype(np.int16)
    return ((samples - 128) << 8).astype("<i2").tobytes()


class PyVoipPhone:
    """A pyVoIP 1.6.8 softphone whose SIP server (registrar, and where every request
    goes) is ``server`` = (host, port) on 127.0.0.1.

    pyVoIP always REGISTERs in start() and gives up for good (stops its socket, status
    FAILED) after three failed attempts in a row, e.g. REGISTER answered 501; with
    ``register=False`` this helper skips registration so the phone can still call.
    Outgoing calls offer PCMU (0) and telephone-event (101) only, and pyVoIP needs a 100
    or 180 before the 200 (else it never learns of the answer). It cannot send DTMF.
    Incoming calls are answered (after pyVoIP's fixed 1 s) when ``auto_answer`` is set
    and land in ``incoming``.
    """

    def __init__(self, *, server: tuple[str, int], user: str = "13700137000",
                 password: str = "secret", register: bool = True,
                 auto_answer: bool = False):
        import pyVoIP.VoIP  # noqa: F401  (must precede pyVoIP.SIP: circular import)
        from pyVoIP.VoIP import VoIPPhone

        self.server = server
        self.sip_port = free_udp_port()
        rtp = free_udp_port_block(20)
        self.incoming: Queue = Queue()
        self._auto_answer = auto_answer
        self.phone = VoIPPhone(server[0], server[1], user, password, myIP=_LOOPBACK,
                               callCallback=self._on_call, sipPort=self.sip_port,
                               rtpPortLow=rtp, rtpPortHigh=rtp + 19)
        if not register:
            # Instance attribute shadows SIPClient.register, which start() calls.
            self.phone.sip.register = lambda: True

    def _on_call(self, call) -> None:
        if self._auto_answer:
            call.answer()
        self.incoming.put(call)

    def __enter__(self) -> PyVoipPhone:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.phone.start()

    def stop(self) -> None:
        """Hang up calls, stop pyVoIP's threads and close its sockets."""
        try:
            self.phone.stop()
        except Exception:  # pyVoIP raises from half-closed sockets; nothing to keep
            pass

    @property
    def status(self):
        """pyVoIP's PhoneStatus (REGISTERING, REGISTERED, FAILED, ...)."""
        return self.phone.get_status()

    def wait_status(self, wanted, timeout: float = 10.0):
        """Poll until ``status`` is ``wanted`` (a PhoneStatus) or ``timeout`` passes; returns the
        last status, for the caller to assert on."""
        deadline = time.monotonic() + timeout
        while self.status != wanted and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.status

    def call(self, number: str, timeout: float = 10.0):
        """INVITE sip:number@server and wait until answered; returns pyVoIP's VoIPCall
        (write_audio(u8 bytes), read_audio(), hangup())."""
        from pyVoIP.VoIP import CallState

        call = self.phone.call(number)
        deadline = time.monotonic() + timeout
        while call.state != CallState.ANSWERED:
            if time.monotonic() > deadline or call.state == CallState.ENDED:
                raise TimeoutError(f"pyVoIP call to {number} not answered ({call.state})")
            time.sleep(0.05)
        return call
