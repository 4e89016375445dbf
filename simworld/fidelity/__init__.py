"""Fidelity: how closely simulated users resemble the real ones they are grounded in.

`simworld eval fidelity SCENARIO` (see `evaluate.py`): preference alignment in Agent4Rec's
1:m protocol, rating prediction against mean baselines, and distributional realism of a run,
each on the held-out part of a MovieLens-grounded population (simworld/grounding.py).
"""

from simworld.fidelity.evaluate import FidelityResult, run_fidelity

__all__ = ["FidelityResult", "run_fidelity"]
