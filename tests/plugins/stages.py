"""A plug-in stage as a user writes one: named by a dotted path in a scenario's `stages:`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CountingStage:
    """Counts the watch rows already applied when it runs, and keeps the counts across rounds
    (its state joins the checkpoint)."""

    label: str = "count_watches"
    seen: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.label

    def run(self, world, rnd) -> None:
        watches = sum(1 for action in rnd.events.cols["action"] if action == "watch")
        self.seen.append(watches)
        rnd.events.add(0, "stage_note", None, text=f"{self.label}: {watches} watches so far", policy="rule")

    def state_dict(self) -> dict:
        return {"seen": list(self.seen)}

    def load_state(self, state: dict) -> None:
        self.seen = list(state["seen"])


def make(label: str = "count_watches") -> CountingStage:
    return CountingStage(label)
