"""Training objectives, each `(params, batch, rng, cfg) -> (loss, metrics)` and jit-able."""

from smt_jax.objectives.bptt import bptt_loss
from smt_jax.objectives.dmt import dmt_loss
from smt_jax.objectives.smt import smt_loss

OBJECTIVES = {"smt": smt_loss, "dmt": dmt_loss, "bptt": bptt_loss}


def objective_for(method: str):
  """The loss function of `method` (smt | dmt | bptt)."""
  if method not in OBJECTIVES:
    raise ValueError(f"method={method!r} is unknown; use one of {tuple(OBJECTIVES)}.")
  return OBJECTIVES[method]


__all__ = ["OBJECTIVES", "objective_for", "smt_loss", "dmt_loss", "bptt_loss"]
