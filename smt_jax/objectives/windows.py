"""Index arithmetic that cuts encoder windows and decoder futures out of a batch of sequences."""

import jax
import jax.numpy as jnp
import numpy as np


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

  t = -1 is the empty past (an all-padding window). The window encoder encodes each window
  separately; the streaming encoder computes every position of x in one pass and picks t.
  remat: recompute the encoder's activations in the backward pass instead of storing them.
  """
  if models.streaming:
    encode_all = lambda p: models.encode_stream(p, x)
    mems = (jax.checkpoint(encode_all) if remat else encode_all)(params)  # (B, T + 1, Z)
    return jnp.take_along_axis(mems, (t + 1)[:, :, None], axis=1)
  encode = lambda w: models.encode(params, w)
  windows = context_windows(x, t, models.encoder_window)
  return over_time(jax.checkpoint(encode) if remat else encode)(windows)


def bucket_lengths(window: int, buckets: int) -> list[int]:
  """Window lengths of the length classes: window, ceil(window / 2), ... (at least 1), longest
  first, at most `buckets` of them."""
  lengths = [window]
  while len(lengths) < buckets and lengths[-1] > 1:
    lengths.append(-(-lengths[-1] // 2))
  return lengths


def memories_at(
  models, params: dict, x: jax.Array, t: np.ndarray, remat: bool = False
) -> jax.Array:
  """Encoder memories at the static positions t (n,), the same in every row of x (B, T):
  (B, n, Z), equal to `encoder_memories` at t.

  With the window encoder and models.buckets > 1, the window at t holds min(t + 1, Tc) valid
  tokens and is encoded with the shortest length L of the classes Tc, Tc/2, ... that holds them:
  exact, since padding is masked and positions are relative to the window's end, and cheaper,
  since the left padding is never computed.
  """
  batch = x.shape[0]
  t = np.asarray(t)
  at = lambda idx: jnp.broadcast_to(t[idx], (batch, idx.size))
  if models.streaming or models.buckets <= 1:
    return encoder_memories(models, params, x, at(np.arange(t.size)), remat)
  encode = lambda w: models.encode(params, w)
  encode = jax.checkpoint(encode) if remat else encode
  lengths = np.array(bucket_lengths(models.encoder_window, models.buckets))
  valid = np.minimum(t + 1, models.encoder_window)
  sizes = np.array([lengths[lengths >= v].min() for v in valid], int)
  out, order = [], []
  for size in np.unique(sizes):  # shortest first: ascending t stay in order
    idx = np.flatnonzero(sizes == size)
    out.append(over_time(encode)(context_windows(x, at(idx), int(size))))
    order.append(idx)
  mems, order = jnp.concatenate(out, axis=1), np.concatenate(order)
  return mems if np.array_equal(order, np.arange(t.size)) else mems[:, np.argsort(order)]


def all_memories(models, params: dict, x: jax.Array, first: int, remat: bool = False):
  """Encoder memories of every position first .. T - 1 of x (B, T): (B, T - first, Z), as
  `memories_at` (length classes with models.buckets > 1)."""
  if models.streaming:  # One pass; a slice, not a gather (whose gradient is a scatter).
    encode_all = lambda p: models.encode_stream(p, x)
    return (jax.checkpoint(encode_all) if remat else encode_all)(params)[:, first + 1 :]
  return memories_at(models, params, x, np.arange(first, x.shape[1]), remat)
