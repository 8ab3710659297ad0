"""Sans-I/O SIP for the hotline: messages, SDP, transactions, the user agent, registrar.

Entry point for drivers: `callcenter.sip.ua.UserAgent`; events in `callcenter.sip.events`.
"""
