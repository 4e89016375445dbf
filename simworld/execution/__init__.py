"""Where the decide stage runs: in this process (the default), and later worker processes or
Ray shards. An executor turns the round's observations into actions, in their order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

from simworld.agents.actions import Action
from simworld.agents.observation import Observation
from simworld.decide import decide_actions

if TYPE_CHECKING:
    from simworld.world import SimWorld


class Executor(Protocol):
    def decide(self, world: "SimWorld", observations: Sequence[Observation]) -> list[Action]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Every policy decides in this process, on the run's event loop."""

    def decide(self, world: "SimWorld", observations: Sequence[Observation]) -> list[Action]:
        return decide_actions(lambda agent_id: world.users[agent_id].policy, observations, world.gather)

    def close(self) -> None:
        pass
