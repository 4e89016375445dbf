"""Prompt templates (files in agents/prompts/) and a token budget per prompt."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from simworld.catalog import Item
from simworld.population import Persona

CHARS_PER_TOKEN = 4  # a conservative estimate for English prompts; the ledger records true counts


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


@lru_cache(maxsize=None)
def template(name: str) -> str:
    return (resources.files("simworld.agents") / "prompts" / f"{name}.txt").read_text(encoding="utf-8")


def system_message(persona: Persona) -> dict[str, str]:
    return {"role": "system", "content": template("system").format(name=persona.name, persona=persona.describe())}


def fixed_first_messages(persona: Persona, task: str, **fields: str) -> list[dict[str, str]]:
    """Messages whose first tokens are the same for every agent (a shared system message, then
    the task's instructions; the persona and data come last). llama.cpp reuses the evaluated
    prefix from the previous call, and hosted APIs cache common prefixes: on the embedded
    model this cuts the prompt work of a voice call by about half."""
    user = template(task).format(name=persona.name, persona=persona.describe(), **fields)
    return [{"role": "system", "content": template("system_shared")}, {"role": "user", "content": user}]


def few_shot_messages(task: str, request: str) -> list[dict[str, str]]:
    """The task's instructions as the system message, its worked examples (`<task>_examples.txt`,
    "ask => answer" lines) as earlier turns, then the request. A small model follows examples
    it has "said" itself far better than rules, and everything before the request is the same
    for every call, so llama.cpp evaluates it once."""
    messages = [{"role": "system", "content": template(task).strip()}]
    for line in template(f"{task}_examples").splitlines():
        if line.strip() and not line.startswith("#"):
            ask, _, answer = line.partition(" => ")
            messages += [{"role": "user", "content": ask.strip()}, {"role": "assistant", "content": answer.strip()}]
    return [*messages, {"role": "user", "content": request}]


def item_lines(items: tuple[Item, ...], with_description: bool) -> str:
    def line(item: Item) -> str:
        genres = "/".join(item.genres)
        desc = f" - {item.description}" if with_description and item.description else ""
        return f"{item.item_id}: {item.label} [{genres}]{desc}"

    return "\n".join(line(i) for i in items)


def fit_to_budget(build, memories: tuple[str, ...], budget_tokens: int) -> str:
    """Build a prompt, dropping detail until it fits: oldest memories first, then descriptions."""
    memories = list(memories)
    for with_description in (True, False):
        mems = list(memories)
        while True:
            text = build(mems, with_description)
            if estimate_tokens(text) <= budget_tokens or not mems:
                break
            mems.pop(0)
        if estimate_tokens(text) <= budget_tokens:
            return text
    return text
