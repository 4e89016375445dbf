"""Where the decide stage runs: in this process (the default), in worker processes or in Ray
actors (the scenario's `execution:` section). An executor turns the round's observations into
actions, in their order; every backend calls `decide_actions`, so policies decide the same way
wherever they run.

    local      LocalExecutor: this process, on the run's event loop
    processes  ProcessExecutor (processes.py): worker processes on this machine
    ray        RayExecutor (ray_backend.py): Ray actors, on a cluster or a local Ray

The sharded backends split the agents into shards (shards.py), send compact observations
(wire.py) and keep the world, the recommender, memory writes and the round barrier in the
driver (sharded.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

from simworld.agents.actions import Action
from simworld.agents.observation import Observation
from simworld.decide import decide_actions

if TYPE_CHECKING:
    from simworld.config import ExecutionSpec
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


def build_executor(spec: "ExecutionSpec", run_id: str) -> Executor:
    """The executor the scenario's `execution:` section asks for."""
    if spec.backend == "processes":
        from simworld.execution.processes import ProcessExecutor

        return ProcessExecutor(spec, run_id)
    if spec.backend == "ray":
        from simworld.execution.ray_backend import RayExecutor

        return RayExecutor(spec, run_id)
    return LocalExecutor()
