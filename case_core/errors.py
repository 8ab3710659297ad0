"""Errors every layer may raise and the command line prints: `UserError`, a problem the user can fix.

It lives here, below the command line, so the case commands (`case_core.commands`) and the
call center's feature commands raise it without importing the composition root
(`callcenter.cli`, which catches it and prints one `error:` line with exit status 2).
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; printed as one `error:` line."""
