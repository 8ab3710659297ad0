"""Small builders shared by the ACD unit tests."""

from __future__ import annotations

import datetime as dt

from callcenter import acd

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def config(*queues: acd.QueueConfig, agents: int = 3, **kwargs) -> acd.AcdConfig:
    return acd.AcdConfig.build(
        queues, [acd.AgentConfig(f"a{i}", f"800{i}") for i in range(1, agents + 1)], **kwargs)


def queue(name: str = "report", strategy: str = "longest_idle", members=("a1", "a2"),
          **kwargs) -> acd.QueueConfig:
    if not isinstance(members, dict):
        members = {m: 0 for m in members}
    return acd.QueueConfig(name=name, strategy=strategy, members=members, **kwargs)


class Run:
    """Feeds events at given seconds; keeps the state, the last actions and the log."""

    def __init__(self, cfg: acd.AcdConfig):
        self.state = acd.new_state(cfg, T0)
        self.actions: list[acd.Action] = []
        self.log: list[acd.QueueEventLogged] = []

    def __call__(self, seconds: float, event: acd.Event) -> list[acd.Action]:
        self.state, self.actions = acd.step(self.state, event, at(seconds))
        self.log += [a for a in self.actions if isinstance(a, acd.QueueEventLogged)]
        return self.actions

    def kinds(self) -> list[str]:
        return [type(a).__name__ for a in self.actions if not isinstance(a, acd.QueueEventLogged)]

    def agent(self, agent_id: str) -> acd.Agent:
        return self.state.agents[agent_id]


def of(actions, cls):
    return [a for a in actions if isinstance(a, cls)]
