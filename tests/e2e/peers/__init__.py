"""Real SIP peers for end-to-end tests: sipp scenarios, baresip and pyVoIP helpers.

None of this code is the hotline's: the peers are programs others wrote, so the hotline is
checked against independent implementations of SIP, SDP, RTP and RFC 4733.
"""
