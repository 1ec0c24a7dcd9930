"""Scanning an updater over a sequence: the one recurrence that DMT, BPTT and evaluation share."""

from collections.abc import Callable
from typing import Any

import jax


def rollout(
  step_fn: Callable[[jax.Array, Any], jax.Array],
  m0: jax.Array,
  xs: Any,
  *,
  backprop_through_rollout: bool = True,
  remat: bool = False,
) -> jax.Array:
  """Runs m_t = step_fn(m_{t-1}, xs[t]) with `lax.scan` over the leading axis of xs.

  Args:
    step_fn: (m (B, Z), x_t) -> m_next (B, Z).
    m0: (B, Z) memory before xs[0].
    xs: pytree with leading time axis L (e.g. int32 tokens (L, B)).
    backprop_through_rollout: False puts a stop-gradient on the memory before each update, so a
      loss at step t reaches the parameters through one update only, never m_{t-2} or earlier.
    remat: recompute each step in the backward pass (`jax.checkpoint`) instead of storing it.
  Returns:
    (L, B, Z) memories m_0 .. m_{L-1} after each input.
  """

  def body(m, x):
    if not backprop_through_rollout:
      m = jax.lax.stop_gradient(m)
    m_next = step_fn(m, x)
    return m_next, m_next

  if remat:
    body = jax.checkpoint(body)
  return jax.lax.scan(body, m0, xs)[1]
