"""Read: teacher-forced evaluation of the RNN and of the teacher over whole sequences.

Each evaluation returns per-position sufficient statistics (summed over the batch), so several
batches add up exactly before `summarize` turns them into losses and accuracies:
  {"loss_sum": (T,), "hits": (T,), "count": (T,)}  float32, count = labelled tokens (y >= 0).
"""

import jax
import jax.numpy as jnp
import numpy as np

from smt_jax.models import Models
from smt_jax.objectives.solvers import rollout_with
from smt_jax.objectives.windows import encoder_memories, over_time


def rnn_memories(models: Models, params: dict, x: jax.Array, prefix: int | None) -> jax.Array:
  """Memories of the RNN reading x, teacher-forced (`rnn_rollout` by `lax.scan`)."""
  return rnn_rollout(models, params, x, prefix)[0]


def rnn_rollout(
  models: Models, params: dict, x: jax.Array, prefix: int | None, solver: str = "scan", newton=None
) -> tuple[jax.Array, dict]:
  """Memories of the RNN reading x, teacher-forced, and the solver's metrics.

  Args:
    x: (B, T) tokens.
    prefix: where the read starts. None: from the updater's initial memory (BPTT's start),
      reading x[0 ..]. 0: from m_empty, the encoder's memory of the empty past (SMT / DMT's
      start), reading x[0 ..]. p >= 1: from the encoder's memory of the window ending at p - 1,
      reading x[p ..].
    solver, newton: how the read is solved (`solvers.rollout_with`; cfg.eval.solver, cfg.newton).
  Returns:
    (B, T - max(p - 1, 0), Z): the memories at positions max(p - 1, 0) .. T - 1; the metrics of
    `rollout_with` ({} for the scan).
  """
  if not prefix:
    start = models.initial_memory if prefix is None else models.empty_memory
    return memories_from(models, params, start(params, x.shape[0]), x, solver, newton)
  start = jnp.full((x.shape[0], 1), prefix - 1)
  m0 = encoder_memories(models, params, x, start)[:, 0]
  mems, metrics = memories_from(models, params, m0, x[:, prefix:], solver, newton)
  return jnp.concatenate([m0[:, None], mems], axis=1), metrics


def memories_from(
  models: Models, params: dict, m0: jax.Array, x: jax.Array, solver: str = "scan", newton=None
) -> tuple[jax.Array, dict]:
  """Memories (B, L, Z) of the RNN (params' updater) reading x (B, L) teacher-forced from m0
  (B, Z): the memory after each token; and the solver's metrics (`rollout_with`)."""
  step = lambda m, xt: models.step(params, m, xt)
  mems, metrics = rollout_with(solver, step, m0, x.T, newton=newton)
  return jnp.swapaxes(mems, 0, 1), metrics


def read_stats_from(models: Models, params: dict, m0: jax.Array, batch: dict) -> dict:
  """`position_stats` of the RNN (params' updater and readout) reading batch {"x", "y"} (B, T)
  from the memory m0 (B, Z): all it needs of a trained run is those two groups and its start."""
  return position_stats(read_logits_from(models, params, m0, batch["x"]), batch["y"])


def read_logits_from(models: Models, params: dict, m0: jax.Array, x: jax.Array) -> jax.Array:
  """(B, T, V) readout logits of the RNN reading x (B, T) teacher-forced from m0 (B, Z)."""
  mems, _ = memories_from(models, params, m0, x)
  return over_time(lambda m: models.read(params, m))(mems)


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


def rnn_read_stats(
  models: Models, params: dict, batch: dict, prefix: int | None, solver: str = "scan", newton=None
) -> dict:
  """`position_stats` of the RNN's readout over all T positions of batch {"x", "y"} (B, T).

  The RNN starts as in `rnn_memories(prefix)`; positions before max(prefix - 1, 0) count no
  labels (the encoder, not the RNN, covered them). With a Newton solver the stats also count
  "solver_reads" (1), "solver_unconverged" (0 / 1) and "solver_iters", which add up over batches.
  """
  mems, metrics = rnn_rollout(models, params, batch["x"], prefix, solver, newton)
  skipped = batch["y"].shape[1] - mems.shape[1]
  logits = over_time(lambda m: models.read(params, m))(mems)
  stats = position_stats(logits, batch["y"][:, skipped:])
  stats = {name: jnp.pad(value, (skipped, 0)) for name, value in stats.items()}
  if metrics:
    stats["solver_reads"] = jnp.float32(1)
    stats["solver_unconverged"] = 1 - metrics["solver_converged"]
    stats["solver_iters"] = metrics["solver_iters"]
  return stats


def lm_read_stats(models: Models, params: dict, batch: dict) -> dict:
  """`position_stats` of the causal Transformer LM (method "lm", `Models.lm_logits`) over all T
  positions of batch {"x", "y"}: the logits at t attend to x[0..t], the LM's read from x[0]."""
  return position_stats(models.lm_logits(params, batch["x"]), batch["y"])


def teacher_read_stats(models: Models, params: dict, batch: dict, chunk: int = 0) -> dict:
  """`position_stats` of the reference the RNN imitates (`teacher_read_logits`)."""
  return position_stats(teacher_read_logits(models, params, batch["x"], chunk), batch["y"])


def teacher_read_logits(models: Models, params: dict, x: jax.Array, chunk: int = 0) -> jax.Array:
  """(B, T, V) logits of the teacher's read of x (B, T): the encoder re-encodes the Tc-window at
  every position t and the decoder, with an empty future, predicts y[:, t].

  chunk > 0 encodes that many positions at a time (`lax.map`), bounding memory on long
  sequences; 0 encodes all T at once.
  """
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
    return logits[:, :length]
  return logits_at(jnp.arange(length))


def add_stats(a: dict | None, b: dict) -> dict:
  """Elementwise sum of two stats dicts (a = None starts an accumulation)."""
  return b if a is None else jax.tree.map(jnp.add, a, b)


def summarize(stats: dict) -> dict:
  """Stats -> {"loss", "acc" (floats over all labels), "loss_per_position",
  "acc_per_position" (NumPy (T,), NaN where nothing is labelled), "num_labels", "num_hits"
  (ints: labels scored and those read right)}, plus "solver_unconverged" (reads) and
  "solver_iters_mean" for reads by a Newton solver."""
  loss_sum, hits, count = (np.asarray(stats[k], np.float64) for k in ("loss_sum", "hits", "count"))
  total = max(count.sum(), 1.0)
  with np.errstate(invalid="ignore", divide="ignore"):
    per_loss = np.where(count > 0, loss_sum / count, np.nan)
    per_acc = np.where(count > 0, hits / count, np.nan)
  out = {
    "loss": float(loss_sum.sum() / total),
    "acc": float(hits.sum() / total),
    "loss_per_position": per_loss,
    "acc_per_position": per_acc,
    "num_labels": int(count.sum()),
    "num_hits": int(hits.sum()),
  }
  if "solver_reads" in stats:  # A Newton solver read: how many reads did not converge.
    out["solver_unconverged"] = int(stats["solver_unconverged"])
    out["solver_iters_mean"] = float(stats["solver_iters"] / stats["solver_reads"])
  return out
