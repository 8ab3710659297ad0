"""SRTP (RFC 3711) for call legs keyed by SDES (RFC 4568): the keys per call and the leg hook.

Encryption is libsrtp's (through pylibsrtp); nothing here is a cipher. The call controller
and the media engine stay plain RTP: the SIP driver hands this module each SDP that crosses
a TLS leg. `SdesCalls` takes the keys out of an offer or answer (the controller sees plain
RTP/AVP), puts ours into what we send (RTP/SAVP + `a=crypto`), and gives an `SrtpContext`
per call once both keys are known. `SrtpSession` wraps that leg's `MediaSession`:
`receive` unprotects before the session sees a packet, `tick` protects what it sends. A leg
without SRTP is never wrapped, so plain calls pay nothing.

Policy (`mode`): "optional" — an RTP/SAVP offer with a usable key on a secure (TLS) leg gets
SRTP, a plain offer plain RTP, and calls we place on TLS legs offer SRTP; "mandatory" — plain
offers on TLS legs are refused (488); "off" — SRTP never (RTP/SAVP offers get 488). Keys are
never accepted from a leg that is not TLS: SDES keys travel in the clear there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pylibsrtp

from callcenter.sip.sdp import (
    SDES_KEY_BYTES, SDES_SUITE, CryptoAttribute, SdpError, sdes_offer, with_sdes, without_sdes,
)

__all__ = ["SrtpContext", "SrtpSession", "SdesCalls", "Refuse"]

_PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80


class SrtpContext:
    """One leg's two libsrtp sessions: ours (outbound, our key) and theirs (inbound)."""

    def __init__(self, local_key: bytes, remote_key: bytes):
        self.local_key = local_key
        self.remote_key = remote_key
        self._tx = pylibsrtp.Session(pylibsrtp.Policy(
            key=local_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=_PROFILE))
        self._rx = pylibsrtp.Session(pylibsrtp.Policy(
            key=remote_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=_PROFILE))
        self.protected = 0
        self.unprotected = 0
        self.rejected = 0

    def protect(self, packet: bytes) -> bytes:
        self.protected += 1
        return self._tx.protect(packet)

    def unprotect(self, packet: bytes) -> bytes | None:
        """The RTP packet, or None for one that fails authentication, replays or is not SRTP."""
        try:
            plain = self._rx.unprotect(packet)
        except pylibsrtp.Error:
            self.rejected += 1
            return None
        self.unprotected += 1
        return plain


class SrtpSession:
    """A `MediaSession` seen through SRTP: the engine calls `receive`/`tick` on this wrapper;
    everything else (play, hold, set_remote, stats …) goes to the wrapped session."""

    def __init__(self, inner, context: SrtpContext):
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "context", context)

    def receive(self, data: bytes, addr, now: float):
        plain = self.context.unprotect(data)
        if plain is None:
            return []
        return self.inner.receive(plain, addr, now)

    def tick(self, now: float):
        datagram, events = self.inner.tick(now)
        if datagram is not None:
            datagram = self.context.protect(datagram)
        return datagram, events

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        setattr(self.inner, name, value)


@dataclass(frozen=True)
class Refuse:
    """The offer cannot be taken under the SRTP policy: answer it with `status`."""

    status: int
    reason: str


@dataclass
class _Keys:
    local: CryptoAttribute
    proto: str = "RTP/SAVP"
    remote: bytes | None = None
    context: SrtpContext | None = field(default=None, repr=False)


class SdesCalls:
    """SDES keys per call id, on the SIP driver's side of the call controller. Pure apart from
    `random_bytes` (key material, e.g. `os.urandom`)."""

    def __init__(self, mode: str, random_bytes: Callable[[int], bytes]):
        if mode not in ("optional", "mandatory", "off"):
            raise ValueError(f"bad SRTP mode {mode!r}")
        self.mode = mode
        self._random = random_bytes
        self._calls: dict[str, _Keys] = {}

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._calls

    def context(self, call_id: str) -> SrtpContext | None:
        keys = self._calls.get(call_id)
        return keys.context if keys is not None else None

    def _new_local(self, tag: int = 1) -> CryptoAttribute:
        return CryptoAttribute(tag, SDES_SUITE, self._random(SDES_KEY_BYTES))

    # -- offers to us (INVITE, re-INVITE) and our answers -----------------------------------
    def offer_in(self, call_id: str, sdp: bytes, *, secure: bool) -> bytes | Refuse:
        """What the controller should see of an offer: plain RTP, or a refusal."""
        if not sdp:
            return sdp
        if b"SAVP" not in sdp and call_id not in self._calls and not (secure and self.mode == "mandatory"):
            return sdp  # the common case, a plain offer: no parsing here
        try:
            proto, usable = sdes_offer(sdp)
        except SdpError:
            return sdp  # the controller refuses it with its own reason
        keys = self._calls.get(call_id)
        if "SAVP" not in proto:
            if keys is not None:
                return Refuse(488, "SRTP call re-offered without SRTP")
            if secure and self.mode == "mandatory":
                return Refuse(488, "SRTP required on TLS")
            return sdp
        if self.mode == "off" or not secure:
            return Refuse(488, "SRTP keys only over TLS" if self.mode != "off" else "SRTP is off")
        if not usable:
            return Refuse(488, f"no {SDES_SUITE} key offered")
        chosen = usable[0]
        if keys is None:
            keys = self._calls[call_id] = _Keys(self._new_local(chosen.tag), proto)
        else:
            keys.local = CryptoAttribute(chosen.tag, keys.local.suite, keys.local.key)
            keys.proto = proto
        if keys.remote != chosen.key:
            keys.remote = chosen.key
            keys.context = None  # made afresh when our answer goes out
        return without_sdes(sdp)

    def answer_out(self, call_id: str, sdp: bytes) -> tuple[bytes, SrtpContext | None]:
        """Our answer as sent (with our key), and the context for the leg (None: plain call)."""
        keys = self._calls.get(call_id)
        if keys is None or keys.remote is None or not sdp:
            return sdp, None
        if keys.context is None:
            keys.context = SrtpContext(keys.local.key, keys.remote)
        return with_sdes(sdp, keys.local, keys.proto), keys.context

    # -- offers we make (calls we place) and the answers to them -----------------------------
    def offer_out(self, sdp: bytes, *, secure: bool) -> tuple[bytes, CryptoAttribute | None]:
        """Our offer as sent: with a key on a TLS leg unless SRTP is off."""
        if not secure or self.mode == "off" or not sdp:
            return sdp, None
        local = self._new_local(1)
        return with_sdes(sdp, local), local

    def placed(self, call_id: str, local: CryptoAttribute) -> None:
        """Remember the key we offered on the call `call_id` (once the INVITE has its id)."""
        self._calls[call_id] = _Keys(local)

    def answer_in(self, call_id: str, sdp: bytes) -> tuple[bytes, SrtpContext | None] | Refuse:
        """What the controller should see of an answer to our SRTP offer, and the context."""
        keys = self._calls.get(call_id)
        if keys is None or not sdp:
            return sdp, None
        try:
            proto, usable = sdes_offer(sdp)
        except SdpError:
            return sdp, None
        match = [c for c in usable if c.tag == keys.local.tag] or usable
        if "SAVP" not in proto or not match:
            return Refuse(488, "answer without a usable SRTP key")
        if keys.remote != match[0].key or keys.context is None:
            keys.remote = match[0].key
            keys.context = SrtpContext(keys.local.key, keys.remote)
        return without_sdes(sdp), keys.context

    def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)
