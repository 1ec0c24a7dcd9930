"""Drift: how far the RNN's rolled-out memory strays from the encoder's memory, step by step.

From the encoder memory m_s at a start position s, the RNN reads x[s+1 .. s+L] on its own
memories. drift[j-1] = MSE(rolled memory after reading x[s+j], encoder memory at s + j); the
one-step error at j is the same MSE for a single update from the encoder memory at s + j - 1.
SMT trains the one-step error; DMT exists to flatten the drift curve.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from smt_jax.models import Models
from smt_jax.objectives.rollout import rollout
from smt_jax.objectives.windows import encoder_memories, over_time

# (m (B, Z), x_t int32 (B,), t int32 (B,) the position of x_t) -> m_next (B, Z). The position is
# there so that oracle updaters (tests, upper bounds) can be written; the RNN ignores it.
StepFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def rnn_step_fn(models: Models, params: dict) -> StepFn:
  """The trained updater as a `StepFn`."""
  return lambda m, x_t, t: models.step(params, m, x_t)


def drift_stats(
  step_fn: StepFn, models: Models, params: dict, x: jax.Array, start: int, steps: int
) -> dict:
  """Rollout drift and one-step error against the encoder's memories, per step.

  Args:
    step_fn: the updater under test.
    models, params: provide the encoder (targets).
    x: (B, T) tokens, T >= start + steps + 1.
    start: s, the position whose encoder memory starts the rollout.
    steps: L, the number of updates.
  Returns:
    {"drift": (L,), "one_step": (L,)} float32 MSEs averaged over the batch and memory features;
    entry j - 1 is about the memory at position s + j.
  """
  batch_size = x.shape[0]
  positions = jnp.broadcast_to(start + jnp.arange(steps + 1), (batch_size, steps + 1))
  targets = encoder_memories(models, params, x, positions).astype(jnp.float32)  # (B, L + 1, Z)
  read_at = positions[:, 1:]  # (B, L)
  inputs = jnp.take_along_axis(x, read_at, axis=1)
  rolled = rollout(lambda m, xt: step_fn(m, *xt), targets[:, 0], (inputs.T, read_at.T))
  one_step = over_time(step_fn)(targets[:, :-1], inputs, read_at)
  error = lambda m: jnp.mean(jnp.square(m.astype(jnp.float32) - targets[:, 1:]), axis=(0, 2))
  return {"drift": error(jnp.swapaxes(rolled, 0, 1)), "one_step": error(one_step)}
