"""A minimal IVR on pyVoIP 1.6.8: answer every call and play one WAV to it in a loop.

The baseline for bench/sip_load.py: what a straightforward pyVoIP `VoIPPhone` server does
with the same sipp load the hotline gets. It is the pyVoIP documentation's answering
machine, looped:

    call.answer(); while answered: call.write_audio(wav); wait the WAV's length

pyVoIP quirks it has to live with (see ../shared/DESIGN.md):
- ``VoIPPhone.start()`` always REGISTERs: the instance's ``sip.register`` (and
  ``deregister``) are replaced by no-ops, so no registrar is needed;
- pyVoIP sends every SIP message to its configured "server" rather than to the request's
  Via, so ``--peer`` must be the address the caller (sipp) sends SIP from;
- it answers one second after the INVITE (a fixed Timer) and works in 8-bit unsigned audio;
- three threads per call: the answering Timer, RTP receive and RTP transmit.

    python bench/pyvoip_server.py --sip-port 25070 --peer 127.0.0.1:25080 \
        --rtp 32000-33999 --wav var/prompts/welcome.wav
    (prints "ready" once listening; SIGTERM/SIGINT stops it)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import wave

import numpy as np

import pyVoIP.VoIP  # noqa: F401  (must precede pyVoIP.SIP: circular import)
from pyVoIP.VoIP import CallState, InvalidStateError, VoIPPhone


def load_u8(path: str) -> bytes:
    """A WAV (8 kHz mono, 8- or 16-bit) as the 8-bit unsigned audio pyVoIP writes."""
    with wave.open(path, "rb") as w:
        if w.getframerate() != 8000 or w.getnchannels() != 1:
            raise SystemExit(f"{path}: need 8 kHz mono, got {w.getframerate()} Hz "
                             f"{w.getnchannels()} ch")
        width, frames = w.getsampwidth(), w.readframes(w.getnframes())
    if width == 1:
        return frames
    samples = np.frombuffer(frames, dtype="<i2").astype(np.int32)
    return ((samples >> 8) + 128).astype(np.uint8).tobytes()


class MiniIvr:
    def __init__(self, *, sip_port: int, peer: tuple[str, int], rtp: tuple[int, int],
                 audio_u8: bytes):
        self.audio = audio_u8
        self.seconds = len(audio_u8) / 8000
        self.answered = 0
        self.failed = 0
        self._lock = threading.Lock()
        self.phone = VoIPPhone(peer[0], peer[1], "bench", "bench", myIP="127.0.0.1",
                               callCallback=self.on_call, sipPort=sip_port,
                               rtpPortLow=rtp[0], rtpPortHigh=rtp[1])
        # Instance attributes shadow SIPClient.register/deregister (no registrar here).
        self.phone.sip.register = lambda: True
        self.phone.sip.deregister = lambda: True

    def on_call(self, call) -> None:
        try:
            call.answer()
        except InvalidStateError:
            with self._lock:
                self.failed += 1
            return
        with self._lock:
            self.answered += 1
        try:
            while call.state == CallState.ANSWERED:
                call.write_audio(self.audio)
                until = time.monotonic() + self.seconds
                while time.monotonic() < until and call.state == CallState.ANSWERED:
                    time.sleep(0.1)
        except Exception:  # the caller hung up under us
            pass

    def start(self) -> None:
        self.phone.start()

    def stop(self) -> None:
        try:
            self.phone.stop()
        except Exception:  # pyVoIP raises from half-closed sockets
            pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sip-port", type=int, required=True)
    ap.add_argument("--peer", required=True, help="HOST:PORT the caller sends SIP from")
    ap.add_argument("--rtp", required=True, help="RTP port range LO-HI")
    ap.add_argument("--wav", required=True, help="what every call hears, looped")
    args = ap.parse_args(argv)
    host, port = args.peer.rsplit(":", 1)
    lo, hi = (int(x) for x in args.rtp.split("-"))
    ivr = MiniIvr(sip_port=args.sip_port, peer=(host, int(port)), rtp=(lo, hi),
                  audio_u8=load_u8(args.wav))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    ivr.start()
    print("ready", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        print(f"answered={ivr.answered} failed={ivr.failed}", file=sys.stderr, flush=True)
        ivr.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
