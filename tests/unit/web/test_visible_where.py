"""Least privilege, the pure rule (web.photos.visible_where / may_see): G1 of issue 14."""

from __future__ import annotations

from types import SimpleNamespace

from case_core.adapters.sqlalchemy_repo import UserView
from web.auth import unbound_department
from web.photos import NO_DEPARTMENT, may_see, visible_where


def case(department):
    return SimpleNamespace(department=department)


def test_department_staff_without_a_department_see_no_case():
    """Fail closed: a 处置部门 user bound to no department sees nothing (it used to be every case)."""
    nobody = UserView(1, "deptx", "deptx", "department", None)
    assert visible_where(nobody) == {"department": NO_DEPARTMENT} and unbound_department(nobody)
    assert not any(may_see(nobody, case(d)) for d in (None, "", "municipal", "lighting"))
    bound = UserView(2, "lamp1", "lamp1", "department", "lighting")
    assert visible_where(bound) == {"department": "lighting"} and not unbound_department(bound)
    assert may_see(bound, case("lighting")) and not may_see(bound, case("municipal")) and not may_see(bound, case(None))
    for role in ("agent", "dispatcher", "admin"):
        other = UserView(3, role, role, role, None)
        assert visible_where(other) == {} and may_see(other, case(None)) and not unbound_department(other)
