"""Scanning an updater over a sequence: the one recurrence that DMT, BPTT and evaluation share."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def rollout(
  step_fn: Callable[[jax.Array, Any], jax.Array],
  m0: jax.Array,
  xs: Any,
  *,
  remat: bool = False,
  truncate: int = 0,
) -> jax.Array:
  """Runs m_t = step_fn(m_{t-1}, xs[t]) with `lax.scan` over the leading axis of xs.

  Args:
    step_fn: (m (B, Z), x_t) -> m_next (B, Z).
    m0: (B, Z) memory before xs[0].
    xs: pytree with leading time axis L (e.g. int32 tokens (L, B)).
    remat: recompute each step in the backward pass (`jax.checkpoint`) instead of storing it.
    truncate: k >= 1 puts a stop-gradient on the memory entering steps 0, k, 2k, .. (block
      truncation): the gradient of output t reaches back through its last (t mod k) + 1 steps,
      never to m0. 0: none (gradients reach m0 through every step).
  Returns:
    (L, B, Z) memories m_0 .. m_{L-1} after each input.
  """

  def body(m, inp):
    x, t = inp
    if truncate:
      m = jnp.where(t % truncate == 0, jax.lax.stop_gradient(m), m)
    m_next = step_fn(m, x)
    return m_next, m_next

  if remat:
    body = jax.checkpoint(body)
  length = jax.tree.leaves(xs)[0].shape[0]
  return jax.lax.scan(body, m0, (xs, jnp.arange(length)))[1]


def regrow(
  step_fn: Callable[[jax.Array, jax.Array], jax.Array],
  chain: jax.Array,
  xs: jax.Array,
  steps: np.ndarray,
) -> jax.Array:
  """The memories of a rollout at `steps`, each recomputed by one update of its detached
  predecessor: the gradient path a stop-gradient before every update leaves them.

  With a stop-gradient on the memory before every update (dmt.grad_steps = 1), a
  loss on the memories at `steps` reaches the parameters through those updates only: a rollout
  run without gradients plus `regrow` gives the same values and gradients for len(steps)
  updates' backward pass, where differentiating the `scan` would run all L (mostly on zeros).

  Args:
    step_fn: (m (N, Z), x_t int32 (N,)) -> (N, Z), row by row.
    chain: (B, L + 1, Z) memories at rollout steps 0 .. L (step 0 = the start).
    xs: (B, L) int32 input read at steps 1 .. L.
    steps: static ascending steps in [0, L]; step 0 is the start itself (no update).
  Returns:
    (B, len(steps), Z).
  """
  steps = np.asarray(steps)
  moved = steps[steps > 0] - 1  # index of the predecessor memory and of the input read
  batch, _, size = chain.shape
  prev = jax.lax.stop_gradient(chain[:, moved]).reshape(-1, size)
  new = step_fn(prev, xs[:, moved].reshape(-1)).reshape(batch, moved.size, size)
  return jnp.concatenate([chain[:, steps[steps == 0]], new], axis=1)
