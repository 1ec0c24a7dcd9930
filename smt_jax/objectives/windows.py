"""Index arithmetic that cuts encoder windows and decoder futures out of a batch of sequences."""

import jax
import jax.numpy as jnp


def _gather(seq: jax.Array, idx: jax.Array, fill: int) -> jax.Array:
  """seq (B, T), idx (B, n, L) -> (B, n, L), `fill` where idx is outside [0, T)."""
  inside = (idx >= 0) & (idx < seq.shape[1])
  picked = jnp.take_along_axis(seq[:, None, :], jnp.clip(idx, 0, seq.shape[1] - 1), axis=2)
  return jnp.where(inside, picked, fill)


def context_windows(x: jax.Array, t: jax.Array, window: int) -> jax.Array:
  """The last `window` tokens up to and including t, left-padded with -1 before the start.

  Args:
    x: (B, T) tokens.
    t: (B, n) end positions.
  Returns:
    (B, n, window) int32 windows x[t - window + 1 .. t].
  """
  idx = t[:, :, None] + jnp.arange(1 - window, 1)
  return _gather(x, idx, -1)


def futures(x: jax.Array, y: jax.Array, t: jax.Array, horizon: int) -> tuple[jax.Array, jax.Array]:
  """Teacher-forced decoder inputs and targets for memories at t.

  Args:
    x, y: (B, T) inputs and labels (-1 = no loss).
    t: (B, n) memory positions.
    horizon: Tf, the number of future targets.
  Returns:
    inputs (B, n, Tf - 1) = x[t + 1 .. t + Tf - 1] (-1 past the end) and
    targets (B, n, Tf) = y[t .. t + Tf - 1] (-1 past the end).
  """
  offsets = jnp.arange(horizon)
  inputs = _gather(x, t[:, :, None] + offsets[1:], -1)
  targets = _gather(y, t[:, :, None] + offsets, -1)
  return inputs, targets


def over_time(fn):
  """Maps fn over axis 1 (timesteps) of every array argument: the SMT 'vmap over timesteps'."""
  return jax.vmap(fn, in_axes=1, out_axes=1)


def encoder_memories(
  models, params: dict, x: jax.Array, t: jax.Array, remat: bool = False
) -> jax.Array:
  """Encoder memories m_t of the Tc-windows ending at t: x (B, T), t (B, n) -> (B, n, Z).

  remat: recompute the encoder's activations in the backward pass instead of storing them.
  """
  encode = lambda w: models.encode(params, w)
  windows = context_windows(x, t, models.encoder_window)
  return over_time(jax.checkpoint(encode) if remat else encode)(windows)
