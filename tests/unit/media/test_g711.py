"""G.711 codecs: bit-exactness against a scalar G.191 transliteration, known values and sox."""

import hashlib
import shutil
import subprocess

import numpy as np
import pytest

from callcenter.media import g711


def _g191_ulaw(x: int) -> int:
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i, segno = absno >> 6, 1
    while i:
        segno += 1
        i >>= 1
    code = ((8 - segno) << 4) | (0xF - ((absno >> segno) & 0xF))
    return code | 0x80 if x >= 0 else code


def _g191_alaw(x: int) -> int:
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


ALL_PCM = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_CODES = bytes(range(256))


def test_ulaw_encode_matches_g191_reference_for_every_sample():
    """µ-law encoding of all 65536 inputs equals the G.191 STL algorithm."""
    expected = bytes(_g191_ulaw(x) for x in range(-32768, 32768))
    assert g711.ulaw_encode(ALL_PCM) == expected


def test_alaw_encode_matches_g191_reference_for_every_sample():
    """A-law encoding of all 65536 inputs equals the G.191 STL algorithm."""
    expected = bytes(_g191_alaw(x) for x in range(-32768, 32768))
    assert g711.alaw_encode(ALL_PCM) == expected


@pytest.mark.parametrize(
    "sample, ulaw, alaw",
    [(0, 0xFF, 0xD5), (-1, 0x7F, 0x55), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A), (1000, 0xCE, 0xFA)],
)
def test_known_code_words(sample, ulaw, alaw):
    """Silence, full scale and a mid value encode to the textbook code words."""
    pcm = np.array([sample], "<i2").tobytes()
    assert g711.ulaw_encode(pcm) == bytes([ulaw])
    assert g711.alaw_encode(pcm) == bytes([alaw])


def test_decode_known_values():
    """Decoding gives the G.711 reconstruction levels at silence and full scale."""
    u = np.frombuffer(g711.ulaw_decode(bytes([0x00, 0x7F, 0x80, 0xFF])), "<i2").tolist()
    a = np.frombuffer(g711.alaw_decode(bytes([0x2A, 0x55, 0xD5, 0xAA])), "<i2").tolist()
    assert u == [-32124, 0, 32124, 0]
    assert a == [-32256, -8, 8, 32256]


def test_decode_tables_are_locked():
    """The 256-entry decode tables hash to the values checked against sox."""
    assert hashlib.sha256(g711.ulaw_decode(ALL_CODES)).hexdigest()[:16] == _ULAW_DEC_SHA
    assert hashlib.sha256(g711.alaw_decode(ALL_CODES)).hexdigest()[:16] == _ALAW_DEC_SHA


# Hashes of the tables as verified equal to sox 14.4 decoding.
_ULAW_DEC_SHA = "3dab54339e520bb2"
_ALAW_DEC_SHA = "e04788d110e58ff8"


def test_reencoding_a_decoded_code_gives_the_same_code():
    """encode(decode(c)) == c for every code word except µ-law negative zero."""
    u = g711.ulaw_encode(g711.ulaw_decode(ALL_CODES))
    a = g711.alaw_encode(g711.alaw_decode(ALL_CODES))
    assert [c for c in range(256) if u[c] != c] == [0x7F]
    assert a == ALL_CODES


def test_transcoding_equals_decode_then_encode():
    """PCMU→PCMA and PCMA→PCMU tables equal decoding then re-encoding."""
    assert g711.transcode(ALL_CODES, "PCMU", "PCMA") == g711.alaw_encode(g711.ulaw_decode(ALL_CODES))
    assert g711.transcode(ALL_CODES, "PCMA", "PCMU") == g711.ulaw_encode(g711.alaw_decode(ALL_CODES))
    assert g711.transcode(b"\x01\x02", "pcmu", "PCMU") == b"\x01\x02"


def test_unknown_codec_and_odd_pcm_are_rejected():
    """Unsupported codec names and half samples raise clear errors."""
    with pytest.raises(g711.UnknownCodecError):
        g711.encoder("G729")
    with pytest.raises(ValueError):
        g711.ulaw_encode(b"\x00\x00\x00")


def test_silence_helper():
    """Encoded silence is 0xFF for µ-law and 0xD5 for A-law."""
    assert g711.silence("PCMU", 3) == b"\xff\xff\xff"
    assert g711.silence("PCMA", 2) == b"\xd5\xd5"


SOX = shutil.which("sox")


def _sox(args, data: bytes) -> bytes:
    return subprocess.run([SOX, *args], input=data, capture_output=True, check=True).stdout


@pytest.mark.skipif(SOX is None, reason="sox not installed")
@pytest.mark.parametrize("codec, sox_name", [("PCMU", "u-law"), ("PCMA", "a-law")])
def test_decoding_matches_sox(codec, sox_name):
    """All 256 code words decode exactly as sox decodes them."""
    ref = _sox(["-t", "raw", "-e", sox_name, "-r", "8000", "-c", "1", "-", "-t", "raw", "-e", "signed",
                "-b", "16", "-L", "-"], ALL_CODES)
    assert g711.decoder(codec)(ALL_CODES) == ref


@pytest.mark.skipif(SOX is None, reason="sox not installed")
@pytest.mark.parametrize("codec, sox_name", [("PCMU", "u-law"), ("PCMA", "a-law")])
def test_encoding_agrees_with_sox_except_on_decision_boundaries(codec, sox_name):
    """sox rounds to 14/13 bits before companding, G.191 truncates: they differ by at most one step."""
    ref = _sox(["-D", "-t", "raw", "-e", "signed", "-b", "16", "-L", "-r", "8000", "-c", "1", "-",
                "-t", "raw", "-e", sox_name, "-"], ALL_PCM)
    mine = g711.encoder(codec)(ALL_PCM)
    dec = g711.decoder(codec)
    mine_lin = np.frombuffer(dec(mine), "<i2").astype(int)
    ref_lin = np.frombuffer(dec(ref), "<i2").astype(int)
    differ = mine_lin != ref_lin
    assert differ.mean() < 0.02
    x = np.arange(-32768, 32768)
    # Where they differ, both reconstructions bracket the input within one step.
    step = np.abs(mine_lin - ref_lin)[differ]
    err = np.abs(x[differ] - mine_lin[differ])
    assert np.all(err <= step)
