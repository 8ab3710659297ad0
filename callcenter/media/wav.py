"""WAV files: crash-safe incremental writing of recordings, reading of prompts.

Owns the RIFF/WAVE byte layout. ``WavWriter`` keeps the file on disk a valid,
playable WAV after every ``flush`` (data first, then the sizes), so a process
that dies mid-call leaves a recording of everything flushed. ``read_wav`` and
``to_8k_mono`` load prompts and speech of any common rate/format into the
8 kHz mono 16-bit PCM the media core speaks.
"""

from __future__ import annotations

import os
import struct

import numpy as np

__all__ = ["WavFormatError", "WavWriter", "read_wav", "to_8k_mono"]

_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_MAX_DATA = 0xFFFFFFFF - 36
_FORMAT_PCM, _FORMAT_FLOAT, _FORMAT_ALAW, _FORMAT_ULAW, _FORMAT_EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


class WavFormatError(ValueError):
    """A file that is not a WAV this module can read."""


class WavWriter:
    """Incremental 16-bit PCM WAV writer; ``write`` buffers, ``flush`` hits the disk.

    A flush is two positioned writes on an unbuffered descriptor (the data at its offset,
    then the 44-byte header with the new sizes): no seeks, no user-space copy, so many
    recordings can be flushed cheaply from one writer thread. Not thread-safe: call it from
    one thread at a time (e.g. a single-worker executor).
    """

    def __init__(self, path: str | os.PathLike, channels: int = 1, sample_rate: int = 8000) -> None:
        if channels < 1 or sample_rate < 1:
            raise ValueError(f"bad WAV shape: {channels} channels at {sample_rate} Hz")
        self.path = os.fspath(path)
        self.channels = channels
        self.sample_rate = sample_rate
        self._block_align = 2 * channels
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._data_bytes = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self._fd: int | None = os.open(self.path, flags, 0o666)
        self._write_header()

    def _write_header(self) -> None:
        os.pwrite(
            self._fd,
            _HEADER.pack(
                b"RIFF", 36 + self._data_bytes, b"WAVE", b"fmt ", 16, _FORMAT_PCM, self.channels,
                self.sample_rate, self.sample_rate * self._block_align, self._block_align, 16,
                b"data", self._data_bytes,
            ),
            0,
        )

    def write(self, pcm: bytes) -> None:
        """Buffer interleaved 16-bit LE samples (whole frames only)."""
        if self._fd is None:
            raise ValueError(f"WAV {self.path} is closed")
        if len(pcm) % self._block_align:
            raise ValueError(
                f"{len(pcm)} bytes is not a whole number of {self.channels}-channel 16-bit frames"
            )
        if self._data_bytes + self._buffered + len(pcm) > _MAX_DATA:
            raise ValueError(f"WAV {self.path} would exceed the 4 GiB RIFF limit")
        if pcm:
            self._buffer.append(bytes(pcm))
            self._buffered += len(pcm)

    def flush(self) -> None:
        """Append buffered audio, then rewrite the sizes, so the file stays playable."""
        if self._fd is None or not self._buffer:
            return
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        view = memoryview(data)
        offset = 44 + self._data_bytes
        while view:  # a regular file takes it whole; a short write (full disk) is retried
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written
        self._data_bytes += len(data)
        self._write_header()

    def sync(self) -> None:
        """Force the audio written so far onto the disk (fdatasync): a power cut keeps it."""
        if self._fd is not None:
            os.fdatasync(self._fd)

    @property
    def duration_s(self) -> float:
        """Seconds of audio written so far, flushed or not."""
        return (self._data_bytes + self._buffered) / self._block_align / self.sample_rate

    def close(self) -> float:
        """Flush, close and return the duration in seconds; closing twice is harmless."""
        if self._fd is not None:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = None
        return self.duration_s

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_wav(path: str | os.PathLike) -> tuple[int, int, bytes]:
    """Read a WAV file as (channels, sample_rate, 16-bit LE interleaved PCM).

    Accepts integer PCM of 8/16/24/32 bits, 32/64-bit float, A-law and µ-law,
    plain or WAVE_FORMAT_EXTENSIBLE. A data chunk whose size runs past the
    end of the file (a recording cut short) is read up to the last whole frame.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise WavFormatError(f"{path}: not a RIFF/WAVE file")
    fmt = None
    data = None
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = struct.unpack_from("<4sI", raw, pos)
        body = raw[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise WavFormatError(f"{path}: fmt chunk of {len(body)} bytes is too short")
            fmt = body
        elif cid == b"data":
            data = body
            if fmt is not None:
                break
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise WavFormatError(f"{path}: missing {'fmt' if fmt is None else 'data'} chunk")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _FORMAT_EXTENSIBLE:
        if len(fmt) < 26:
            raise WavFormatError(f"{path}: extensible fmt chunk without a sub-format")
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if channels < 1 or rate < 1 or block_align < 1:
        raise WavFormatError(f"{path}: bad format ({channels} channels, {rate} Hz)")
    data = data[: len(data) - len(data) % block_align]
    width = block_align // channels
    if tag == _FORMAT_PCM and width in (1, 2, 3, 4):
        if width == 1:
            samples = (np.frombuffer(data, np.uint8).astype(np.int16) - 128) << 8
        elif width == 2:
            samples = np.frombuffer(data, "<i2")
        elif width == 3:
            b = np.frombuffer(data, np.uint8).reshape(-1, 3)
            samples = (b[:, 2].astype(np.int8).astype(np.int16) << 8) | b[:, 1]
        else:
            samples = (np.frombuffer(data, "<i4") >> 16).astype(np.int16)
        return channels, rate, samples.astype("<i2").tobytes()
    if tag == _FORMAT_FLOAT and width in (4, 8):
        x = np.frombuffer(data, "<f4" if width == 4 else "<f8")
        return channels, rate, np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()
    if tag in (_FORMAT_ALAW, _FORMAT_ULAW) and width == 1:
        from callcenter.media import g711

        decode = g711.alaw_decode if tag == _FORMAT_ALAW else g711.ulaw_decode
        return channels, rate, decode(data)
    raise WavFormatError(f"{path}: unsupported WAV format tag {tag:#x} with {bits} bits")


def wav_seconds(path: str | os.PathLike) -> float:
    """A WAV file's length in seconds; 0.0 when it cannot be read (missing, cut short, not WAV)."""
    try:
        channels, rate, pcm = read_wav(path)
    except (OSError, WavFormatError):
        return 0.0
    return len(pcm) / (2 * channels * rate)


def _sinc_kernel(d: np.ndarray, cutoff: float, half: int) -> np.ndarray:
    # Kaiser-windowed sinc; cutoff is relative to the input Nyquist frequency.
    window = np.where(np.abs(d) < half, np.i0(8.0 * np.sqrt(np.clip(1 - (d / half) ** 2, 0, 1))), 0.0)
    return cutoff * np.sinc(cutoff * d) * window / np.i0(8.0)


def to_8k_mono(pcm: bytes, channels: int, rate: int) -> bytes:
    """Mix down to mono and resample to 8 kHz, low-passing first to avoid aliasing.

    Windowed-sinc interpolation with the cut-off just below the lower of the
    two Nyquist frequencies; integer ratios (16, 48 kHz) use a plain FIR and
    decimation, other ratios (11.025, 44.1 kHz) evaluate the kernel at each
    output instant.
    """
    if channels < 1 or rate < 1:
        raise ValueError(f"bad audio shape: {channels} channels at {rate} Hz")
    if len(pcm) % (2 * channels):
        raise ValueError(f"{len(pcm)} bytes is not a whole number of {channels}-channel frames")
    x = np.frombuffer(pcm, "<i2").reshape(-1, channels).astype(np.float64).mean(axis=1)
    if rate == 8000 or len(x) == 0:
        y = x
    else:
        cutoff = min(1.0, 8000 / rate) * 0.9
        half = int(np.ceil(10 / cutoff))
        if rate % 8000 == 0:
            step = rate // 8000
            taps = _sinc_kernel(np.arange(-half + 1, half, dtype=np.float64), cutoff, half)
            y = np.convolve(x, taps, mode="same")[::step]
        else:
            n_out = int(len(x) * 8000 // rate)
            offsets = np.arange(-half + 1, half + 1)
            out = np.empty(n_out)
            chunk = max(1, 200_000 // len(offsets))
            padded = np.concatenate([np.zeros(half), x, np.zeros(half + 1)])
            for start in range(0, n_out, chunk):
                m = np.arange(start, min(n_out, start + chunk))
                t = m * (rate / 8000)
                base = np.floor(t).astype(np.int64)
                idx = base[:, None] + offsets[None, :]
                w = _sinc_kernel(t[:, None] - idx, cutoff, half)
                out[m] = (padded[idx + half] * w).sum(axis=1)
            y = out
    return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()
