"""Read: teacher-forced evaluation of the RNN and of the teacher over whole sequences."""

import jax
import jax.numpy as jnp
import ml_collections

from smt_jax.models import Models, build_models
from smt_jax.objectives import losses
from smt_jax.objectives.rollout import rollout
from smt_jax.objectives.windows import encoder_memories


def rnn_memories(models: Models, params: dict, x: jax.Array, prefix: int) -> jax.Array:
  """Memories of the RNN reading x, teacher-forced.

  Args:
    x: (B, T) tokens.
    prefix: 0 starts from the updater's initial memory and reads x[0 ..]; p >= 1 starts from
      the encoder's memory of the window ending at p - 1 and reads x[p ..].
  Returns:
    (B, T - max(p - 1, 0), Z): the memories at positions max(p - 1, 0) .. T - 1.
  """
  step = lambda m, xt: models.step(params, m, xt)
  if prefix == 0:
    m0, inputs = models.initial_memory(params, x.shape[0]), x
  else:
    start = jnp.full((x.shape[0], 1), prefix - 1)
    m0 = encoder_memories(models, params, x, start)[:, 0]
    inputs = x[:, prefix:]
  mems = jnp.swapaxes(rollout(step, m0, inputs.T), 0, 1)
  return mems if prefix == 0 else jnp.concatenate([m0[:, None], mems], axis=1)


def rnn_read_metrics(params: dict, batch: dict, cfg: ml_collections.ConfigDict, prefix: int):
  """Readout cross-entropy and accuracy of the RNN over the labelled positions it reaches.

  Returns {"rnn_loss", "rnn_acc", "rnn_loss_per_position" (T',)} for positions
  max(prefix - 1, 0) .. T - 1 (per-position loss is NaN where nothing is labelled).
  """
  models = build_models(cfg)
  mems = rnn_memories(models, params, batch["x"], prefix)
  labels = batch["y"][:, batch["y"].shape[1] - mems.shape[1]:]
  logits = jax.vmap(lambda m: models.read(params, m), in_axes=1, out_axes=1)(mems)
  return _read_metrics("rnn", logits, labels)


def teacher_read_metrics(params: dict, batch: dict, cfg: ml_collections.ConfigDict):
  """The reference the RNN imitates: re-encode the window at every position, decode the next
  target. Returns {"teacher_loss", "teacher_acc", "teacher_loss_per_position" (T,)}."""
  models = build_models(cfg)
  x = batch["x"]
  t = jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape)
  mems = encoder_memories(models, params, x, t)
  empty = jnp.zeros((x.shape[0], 0), jnp.int32)
  logits = jax.vmap(lambda m: models.decode(params, m, empty)[:, 0], in_axes=1, out_axes=1)(mems)
  return _read_metrics("teacher", logits, batch["y"])


def _read_metrics(prefix: str, logits: jax.Array, labels: jax.Array) -> dict:
  loss, _ = losses.masked_cross_entropy(logits, labels)
  valid = labels >= 0
  per_token = -jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.maximum(labels, 0)[..., None],
                                   axis=-1)[..., 0]
  per_position = jnp.sum(jnp.where(valid, per_token, 0.0), 0) / jnp.sum(valid, 0)
  return {f"{prefix}_loss": loss, f"{prefix}_acc": losses.masked_accuracy(logits, labels),
          f"{prefix}_loss_per_position": per_position}
