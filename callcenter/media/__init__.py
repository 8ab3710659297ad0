"""Pure media core: G.711, RTP, DTMF, one RTP session per call leg, WAV and stereo recording.

No I/O and no clock here: the Twisted driver (``callcenter.twisted_rtp``) moves
datagrams and calls ``MediaSession.tick(now)`` every 20 ms. Modules:
``g711`` codecs and transcoding, ``rtp`` packets, ``dtmf`` RFC 4733 and in-band,
``jitter`` reorder buffer, ``events`` what a session reports, ``session`` one
leg, ``recorder`` stereo pairing, ``wav`` files.
"""
