"""The interfaces the web and the case service depend on are met by the implementations the
composition root hands in (checked by name and parameters, so an interface and its adapter
cannot drift apart unnoticed)."""

import inspect

import pytest

from callcenter.acd_store import QueueLog
from callcenter.desk_service import DeskService
from callcenter.callbacks.dialer import FollowUpDialer
from callcenter.metrics import HotlineMetrics
from callcenter.notify.web_service import SmsWebService
from callcenter.stt.store import TranscriptStore
from case_core import ports as case_ports
from case_core.adapters.sqlalchemy_repo import SqlRepository
from web import ports as web_ports


def _members(protocol: type) -> dict[str, object]:
    """The protocol's own methods and declared attributes (not those of `typing.Protocol`)."""
    out: dict[str, object] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object,) or klass.__module__ == "typing":
            continue
        out.update({name: None for name in getattr(klass, "__annotations__", {})})
        out.update({name: value for name, value in vars(klass).items()
                    if not name.startswith("_") and callable(value)})
    return out


def _params(fn) -> list[tuple[str, object]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


CASES = [
    (web_ports.Desk, DeskService, ("acd", "router")),  # instance attributes set in __init__
    (web_ports.CallbackDialer, FollowUpDialer, ("scheduler", "state")),
    (web_ports.MetricsExposition, HotlineMetrics, ()),
    (web_ports.QueueLog, QueueLog, ()),
    (web_ports.Transcripts, TranscriptStore, ()),
    (web_ports.Sms, SmsWebService, ()),
    (case_ports.CaseRepository, SqlRepository, ()),
    (case_ports.CaseQueries, SqlRepository, ()),
]


@pytest.mark.parametrize(("protocol", "implementation", "instance_attributes"), CASES,
                         ids=[f"{p.__name__}-{i.__name__}" for p, i, _ in CASES])
def test_implementation_has_every_member_of_its_interface(protocol, implementation, instance_attributes):
    """Each method of the interface exists on the implementation with the same parameters
    (the implementation may add optional ones); each declared attribute exists on the class
    or is set by its constructor."""
    init_source = inspect.getsource(implementation.__init__)
    for name, member in _members(protocol).items():
        if member is None:  # a declared attribute
            assert (hasattr(implementation, name) or name in instance_attributes
                    or f"self.{name} =" in init_source), f"{implementation.__name__} lacks {name}"
            continue
        impl = getattr(implementation, name, None)
        if impl is None and f"self.{name} =" in init_source:
            continue  # a callable handed to the constructor (e.g. now_dt)
        assert impl is not None and callable(impl), f"{implementation.__name__} lacks {name}()"
        wanted = [p for p in _params(member) if p[1] not in (inspect.Parameter.VAR_KEYWORD,)]
        given = _params(impl)
        given_names = [n for n, _ in given]
        if any(k == inspect.Parameter.VAR_KEYWORD for _, k in _params(member)):
            wanted = [p for p in wanted if p[1] == inspect.Parameter.POSITIONAL_OR_KEYWORD]
        for n, _kind in wanted:
            assert n in given_names, f"{implementation.__name__}.{name} has no parameter {n!r} ({given_names})"
        assert inspect.iscoroutinefunction(impl) == inspect.iscoroutinefunction(member), \
            f"{implementation.__name__}.{name}: async in one, not in the other"


def test_service_and_views_name_no_adapter():
    """CaseService's constructor is typed with the interface, and the web's views come from case_core.views."""
    from case_core import service, views

    assert "CaseRepository" in str(inspect.signature(service.CaseService.__init__).parameters["repo"].annotation)
    assert SqlRepository.get_case.__module__ == "case_core.adapters.sqlalchemy_repo"
    import case_core.adapters.sqlalchemy_repo as repo_module

    assert repo_module.CaseView is views.CaseView and repo_module.NotFound is views.NotFound
