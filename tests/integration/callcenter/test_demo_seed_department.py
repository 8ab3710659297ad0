"""`hotline demo seed` binds its department user to a department of the demo data (issue 14, G1)."""

from __future__ import annotations

import asyncio

from callcenter import cli
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine


async def test_demo_seed_binds_dept1_and_fixes_an_unbound_one(sqlite_url, tmp_path):
    """dept1 gets `municipal` (市政设施养护中心); a second seed binds a dept1 left unbound by an
    earlier version, and a third changes nothing."""
    config = tmp_path / "hotline.toml"
    config.write_text(f'[database]\nurl = "{sqlite_url}"\n')

    def seed() -> int:
        return cli.main(["demo", "seed", "--config", str(config)])

    assert await asyncio.to_thread(seed) == 0
    repo = SqlRepository(make_engine(sqlite_url))
    try:
        assert (await repo.get_user("dept1")).department == "municipal"
        await repo.update_user("dept1", clear_department=True)  # as an older `demo seed` left it
        assert (await repo.get_user("dept1")).department is None
        assert await asyncio.to_thread(seed) == 0
        assert (await repo.get_user("dept1")).department == "municipal"
        assert await asyncio.to_thread(seed) == 0
        users = await repo.list_users()
        assert [u.department for u in users if u.role == "department"] == ["municipal"]
        assert sum(u.username == "dept1" for u in users) == 1
    finally:
        await repo.close()
