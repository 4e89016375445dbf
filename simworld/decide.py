"""How a group of agents' policies turn their observations into actions.

Every execution backend (this process, worker processes, Ray shards; simworld/execution)
calls `decide_actions` for the agents it holds, so the policies decide the same way
wherever they run."""

from __future__ import annotations

from typing import Callable, Sequence

from simworld.agents.actions import Action
from simworld.agents.observation import Observation
from simworld.agents.policy import Policy


def decide_actions(policy_of: Callable[[int], Policy], observations: Sequence[Observation],
                   gather: Callable[[list], list]) -> list[Action]:
    """Each observation's action, in the order of `observations`; policies decide concurrently
    (`gather` runs their coroutines on the run's event loop)."""
    return gather([policy_of(o.agent_id).decide(o) for o in observations])
