"""How a group of agents' policies turn their observations into actions.

Every execution backend (this process, worker processes, Ray shards; simworld/execution)
calls `decide_actions` for the agents it holds, so the policies decide the same way
wherever they run."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from simworld.agents.actions import Action
from simworld.agents.observation import Observation
from simworld.agents.policy import Policy


def decide_actions(policy_of: Callable[[int], Policy], observations: Sequence[Observation],
                   gather: Callable[[list], list]) -> list[Action]:
    """Each observation's action, in the order of `observations`. A policy with
    `decide_batch(observations) -> list[Action]` (the rule policy) decides for all its agents in
    one call, which must equal deciding one at a time; the others decide concurrently (`gather`
    runs their coroutines on the run's event loop). Every agent draws only from its own
    observation's rng, so the grouping does not change what anyone decides."""
    actions: list[Action | None] = [None] * len(observations)
    batches: dict[int, tuple[object, list[int]]] = {}  # id(policy) -> (policy, positions)
    single: list[tuple[int, Policy]] = []
    for k, obs in enumerate(observations):
        policy = policy_of(obs.agent_id)
        if callable(getattr(policy, "decide_batch", None)):
            batches.setdefault(id(policy), (policy, []))[1].append(k)
        else:
            single.append((k, policy))
    if single:
        for (k, _), action in zip(single, gather([policy.decide(observations[k]) for k, policy in single])):
            actions[k] = action
    for policy, positions in batches.values():
        for k, action in zip(positions, policy.decide_batch([observations[k] for k in positions])):
            actions[k] = action
    return actions  # type: ignore[return-value]
