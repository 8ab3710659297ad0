"""No code awaits other database work while it holds a pooled connection.

SQLite's async engine has a pool of one connection: inside `async with engine.begin() as
conn:` (or `.connect()`), awaiting anything that asks the pool for another connection waits
forever (the second `make run` hung so in `hotline demo seed`). Inside such a block every
await must use the block's connection: `conn.execute(…)`, or a helper given `conn`.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("callcenter", "case_core", "web", "ivr_flows")


def _violations(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.AsyncWith):
            continue
        conns = set()
        for item in node.items:
            call = item.context_expr
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr in ("begin", "connect") and item.optional_vars is not None):
                conns.add(ast.unparse(item.optional_vars))
        if not conns:
            continue
        for sub in node.body:
            for n in ast.walk(sub):
                if not isinstance(n, ast.Await) or not isinstance(n.value, ast.Call):
                    continue
                call = n.value
                callee = ast.unparse(call.func)
                args = [ast.unparse(a) for a in (*call.args, *(k.value for k in call.keywords))]
                if any(callee.startswith(c + ".") for c in conns) or any(a in conns for a in args):
                    continue
                found.append(f"{name}:{n.lineno}: await {callee}(…) while holding {', '.join(sorted(conns))}")
    return found


def test_the_checker_finds_the_pattern():
    bad = ("async def f(self):\n    async with self.engine.begin() as conn:\n"
           "        await conn.execute(x)\n        await self.get_user('a')\n")
    good = ("async def f(self):\n    async with self.engine.begin() as conn:\n"
            "        await conn.execute(x)\n        await helper(conn, 1)\n    await self.get_user('a')\n")
    assert _violations(bad, "bad.py") == ["bad.py:4: await self.get_user(…) while holding conn"]
    assert _violations(good, "good.py") == []


def test_no_second_connection_inside_a_connection_block():
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found += _violations(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert found == []
