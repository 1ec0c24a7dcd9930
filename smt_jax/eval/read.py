"""Read: teacher-forced evaluation of the RNN and of the teacher over whole sequences.

Each evaluation returns per-position sufficient statistics (summed over the batch), so several
batches add up exactly before `summarize` turns them into losses and accuracies:
  {"loss_sum": (T,), "hits": (T,), "count": (T,)}  float32, count = labelled tokens (y >= 0).
"""

import jax
import jax.numpy as jnp
import numpy as np

from smt_jax.models import Models
from smt_jax.objectives.rollout import rollout
from smt_jax.objectives.windows import encoder_memories, over_time


def rnn_memories(models: Models, params: dict, x: jax.Array, prefix: int | None) -> jax.Array:
  """Memories of the RNN reading x, teacher-forced.

  Args:
    x: (B, T) tokens.
    prefix: where the read starts. None: from the updater's initial memory (BPTT's start),
      reading x[0 ..]. 0: from m_empty, the encoder's memory of the empty past (SMT / DMT's
      start), reading x[0 ..]. p >= 1: from the encoder's memory of the window ending at p - 1,
      reading x[p ..].
  Returns:
    (B, T - max(p - 1, 0), Z): the memories at positions max(p - 1, 0) .. T - 1.
  """
  step = lambda m, xt: models.step(params, m, xt)
  if not prefix:
    start = models.initial_memory if prefix is None else models.empty_memory
    m0, inputs = start(params, x.shape[0]), x
  else:
    start = jnp.full((x.shape[0], 1), prefix - 1)
    m0 = encoder_memories(models, params, x, start)[:, 0]
    inputs = x[:, prefix:]
  mems = jnp.swapaxes(rollout(step, m0, inputs.T), 0, 1)
  return mems if not prefix else jnp.concatenate([m0[:, None], mems], axis=1)


def position_stats(logits: jax.Array, labels: jax.Array) -> dict:
  """Per-position cross-entropy sums, correct argmaxes and label counts over the batch.

  Args:
    logits: (B, L, V) float.
    labels: (B, L) int, -1 = no label.
  Returns:
    {"loss_sum", "hits", "count"}, each float32 (L,).
  """
  valid = labels >= 0
  safe = jnp.maximum(labels, 0)[..., None]
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits.astype(jnp.float32)), safe, -1)[..., 0]
  hits = jnp.argmax(logits, axis=-1) == labels
  return {
    "loss_sum": jnp.sum(jnp.where(valid, nll, 0.0), 0),
    "hits": jnp.sum(valid & hits, 0).astype(jnp.float32),
    "count": jnp.sum(valid, 0).astype(jnp.float32),
  }


def rnn_read_stats(models: Models, params: dict, batch: dict, prefix: int | None) -> dict:
  """`position_stats` of the RNN's readout over all T positions of batch {"x", "y"} (B, T).

  The RNN starts as in `rnn_memories(prefix)`; positions before max(prefix - 1, 0) count no
  labels (the encoder, not the RNN, covered them).
  """
  mems = rnn_memories(models, params, batch["x"], prefix)
  skipped = batch["y"].shape[1] - mems.shape[1]
  logits = over_time(lambda m: models.read(params, m))(mems)
  stats = position_stats(logits, batch["y"][:, skipped:])
  return {name: jnp.pad(value, (skipped, 0)) for name, value in stats.items()}


def lm_read_stats(models: Models, params: dict, batch: dict) -> dict:
  """`position_stats` of the causal Transformer LM (method "lm", `Models.lm_logits`) over all T
  positions of batch {"x", "y"}: the logits at t attend to x[0..t], the LM's read from x[0]."""
  return position_stats(models.lm_logits(params, batch["x"]), batch["y"])


def teacher_read_stats(models: Models, params: dict, batch: dict, chunk: int = 0) -> dict:
  """`position_stats` of the reference the RNN imitates: the encoder re-encodes the Tc-window at
  every position t and the decoder, with an empty future, predicts y[:, t].

  chunk > 0 encodes that many positions at a time (`lax.map`), bounding memory on long
  sequences; 0 encodes all T at once.
  """
  x = batch["x"]
  batch_size, length = x.shape
  empty = jnp.zeros((batch_size, 0), jnp.int32)

  def logits_at(t):  # (n,) positions -> (B, n, V)
    mems = encoder_memories(models, params, x, jnp.broadcast_to(t, (batch_size, t.shape[0])))
    return over_time(lambda m: models.decode(params, m, empty)[:, 0])(mems)

  if 0 < chunk < length:
    blocks = -(-length // chunk)
    t = jnp.minimum(jnp.arange(blocks * chunk), length - 1).reshape(blocks, chunk)
    logits = jnp.moveaxis(jax.lax.map(logits_at, t), 0, 1).reshape(
      batch_size, -1, models.decoder.vocab_size
    )
    logits = logits[:, :length]
  else:
    logits = logits_at(jnp.arange(length))
  return position_stats(logits, batch["y"])


def add_stats(a: dict | None, b: dict) -> dict:
  """Elementwise sum of two stats dicts (a = None starts an accumulation)."""
  return b if a is None else jax.tree.map(jnp.add, a, b)


def summarize(stats: dict) -> dict:
  """Stats -> {"loss", "acc" (floats over all labels), "loss_per_position",
  "acc_per_position" (NumPy (T,), NaN where nothing is labelled), "num_labels" (int)}."""
  loss_sum, hits, count = (np.asarray(stats[k], np.float64) for k in ("loss_sum", "hits", "count"))
  total = max(count.sum(), 1.0)
  with np.errstate(invalid="ignore", divide="ignore"):
    per_loss = np.where(count > 0, loss_sum / count, np.nan)
    per_acc = np.where(count > 0, hits / count, np.nan)
  return {
    "loss": float(loss_sum.sum() / total),
    "acc": float(hits.sum() / total),
    "loss_per_position": per_loss,
    "acc_per_position": per_acc,
    "num_labels": int(count.sum()),
  }
