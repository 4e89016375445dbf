"""Rank films by the embedded model's log-probabilities instead of its generated answers.

A 135M chat model picks no better than chance when asked to choose (it answers the first
option, or "No" to everything). Small models can rank better than they generate, so this
scores each candidate film from the model's next-token distribution, two ways:

* **yes/no**: log P("Yes") - log P("No") after "You loved A, B, C. Would you enjoy X?" in the
  chat template, minus the same log-odds for a film-only prompt ("Would you enjoy X?"), which
  cancels the film's own pull on the answer. (A constant per persona, such as the model's
  "No" bias, cannot change a ranking within one page.)
* **continuation**: log P(X | "People who loved A, B and C also loved:") minus
  log P(X | "People also loved:"), a pointwise mutual information that cancels each title's
  length and prior.

`LogprobScorer` owns its llama.cpp contexts with `logits_all=True` (the chat engine keeps only
the last position's logits), one per kind of prompt, and reuses each context's evaluated prefix
between calls as llama.cpp's own generate does: the candidates of one page share everything up
to the film's name, so each costs only its own tokens. `benchmarks/bench_logprob_scorer.py` measures its alignment in the fidelity
trials next to random.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from simworld.catalog import Item

SYSTEM = "You are a film lover. Answer Yes or No."


def _log_softmax(row: np.ndarray) -> np.ndarray:
    row = row.astype(np.float64)
    top = row.max()
    return row - top - np.log(np.exp(row - top).sum())


def film_text(item: Item) -> str:
    genres = ", ".join(g.lower() for g in item.genres[:2])
    return f"{item.label} ({genres})" if genres else item.label


class LogprobScorer:
    """Log-probability scores from one GGUF model (default: the embedded SmolLM2-135M)."""

    def __init__(self, name: str = "smollm2", n_ctx: int = 512, threads: int = 1):
        from llama_cpp import Llama

        from simworld.llm.embedded import model_path

        # One thread: scoring evaluates short suffixes, and on a shared 2-core machine llama.cpp's
        # spinning worker threads made a prompt 3-10 times slower than one thread.
        self._make = lambda: Llama(model_path=str(model_path(name)), n_ctx=n_ctx, logits_all=True,
                                   n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)
        self._contexts: dict[str, object] = {}
        self._lock = threading.Lock()  # llama.cpp is not re-entrant: evaluations are serialised
        self.yes = self._token(" Yes"), self._token("Yes")
        self.no = self._token(" No"), self._token("No")
        self._film_prior: dict[tuple[str, int], float] = {}

    def _context(self, channel: str):
        if channel not in self._contexts:
            self._contexts[channel] = self._make()
        return self._contexts[channel]

    def _token(self, text: str) -> int:
        return self._context("yes").tokenize(text.encode(), add_bos=False, special=False)[0]

    def tokens(self, text: str) -> list[int]:
        return self._context("yes").tokenize(text.encode(), add_bos=False, special=True)

    def _eval(self, tokens: list[int], channel: str) -> np.ndarray:
        """Logits for every position of `tokens`, evaluating only what differs from the channel's last call."""
        llm = self._context(channel)
        if len(tokens) > llm.n_ctx():
            raise ValueError(f"prompt of {len(tokens)} tokens exceeds the scorer's context of {llm.n_ctx()}")
        cached = llm.input_ids[:llm.n_tokens].tolist()
        common = 0
        for a, b in zip(cached, tokens):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # re-evaluate at least the last token
        llm.n_tokens = common
        llm.eval(tokens[common:])
        return llm.scores[:len(tokens)]

    def _chat(self, user: str) -> list[int]:
        return self.tokens(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                           "<|im_start|>assistant\n")

    def yes_logodds(self, user: str, channel: str = "yes") -> float:
        """log P(Yes) - log P(No) for the assistant's first token (either spacing)."""
        with self._lock:
            last = _log_softmax(self._eval(self._chat(user), channel)[-1])
        return float(np.logaddexp(*last[list(self.yes)]) - np.logaddexp(*last[list(self.no)]))

    def continuation_logprob(self, prefix: str, text: str, channel: str = "cont") -> float:
        """log P(text | prefix), summed over text's tokens."""
        head, tail = self.tokens(prefix), self.tokens(text)
        with self._lock:
            logits = self._eval(head + tail, channel)
            return float(sum(_log_softmax(logits[len(head) + k - 1])[tok] for k, tok in enumerate(tail)))

    # -- the two scores ---------------------------------------------------------------------------

    def yes_no_parts(self, liked: Sequence[Item], item: Item) -> tuple[float, float]:
        """(yes log-odds given the liked films, yes log-odds for the film alone)."""
        loved = "; ".join(i.label for i in liked)
        with_taste = self.yes_logodds(f"You loved these films: {loved}. Would you enjoy {film_text(item)}?")
        key = ("yes", item.item_id)
        if key not in self._film_prior:
            self._film_prior[key] = self.yes_logodds(f"Would you enjoy {film_text(item)}?", "yes_prior")
        return with_taste, self._film_prior[key]

    def continuation_parts(self, liked: Sequence[Item], item: Item) -> tuple[float, float]:
        """(log P(title | the liked films), log P(title | no films))."""
        names = [i.label for i in liked]
        loved = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
        conditional = self.continuation_logprob(f"People who loved {loved} also loved:", f" {item.label}")
        key = ("cont", item.item_id)
        if key not in self._film_prior:
            self._film_prior[key] = self.continuation_logprob("People also loved:", f" {item.label}", "cont_prior")
        return conditional, self._film_prior[key]

    def yes_no(self, liked: Sequence[Item], item: Item) -> float:
        with_taste, alone = self.yes_no_parts(liked, item)
        return with_taste - alone

    def continuation(self, liked: Sequence[Item], item: Item) -> float:
        conditional, alone = self.continuation_parts(liked, item)
        return conditional - alone
