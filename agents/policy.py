"""The decision-policy protocol: any object with `async decide(observation) -> Action`."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from simworld.agents.actions import Action
from simworld.agents.observation import Observation


@runtime_checkable
class Policy(Protocol):
    name: str

    async def decide(self, observation: Observation) -> Action: ...
