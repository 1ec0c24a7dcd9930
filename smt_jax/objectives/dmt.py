"""DAgger Memory Training: the updater rolls out on its own memories and is regressed onto the
encoder's memories along the way; the readout learns from these on-policy memories."""

import jax
import jax.numpy as jnp
import ml_collections

from smt_jax.models import build_models
from smt_jax.objectives import losses
from smt_jax.objectives.rollout import rollout
from smt_jax.objectives.windows import encoder_memories, over_time


def rollout_length(cfg: ml_collections.ConfigDict, length: int) -> int:
  """Td: cfg.dmt.Td, or with Td = 0 the rest of the sequence after dmt.start (T - 1 - start;
  from m_empty, all T tokens)."""
  return cfg.dmt.Td or length - 1 - cfg.dmt.start


def rollout_starts(rng: jax.Array, batch_size: int, length: int, cfg: ml_collections.ConfigDict):
  """Start positions s (B,), -1 = m_empty: cfg.dmt.start, or with dmt.random_start uniform per
  sequence in [-1, T - 1 - Td]."""
  if not cfg.dmt.random_start:
    return jnp.full((batch_size,), cfg.dmt.start, jnp.int32)
  return jax.random.randint(rng, (batch_size,), -1, length - cfg.dmt.Td)


def dmt_loss(params: dict, batch: dict, rng: jax.Array, cfg: ml_collections.ConfigDict):
  """coef_dyn * MSE(rolled memories every k steps, encoder memories) + coef_readout * CE.

  From the encoder memory m_s (s = -1: m_empty, the memory of the empty past), the updater reads
  x[s+1 .. s+Td] (a `lax.scan`), producing memories at s+1 .. s+Td. Steps j = k, 2k, .. <= Td
  are regressed onto the encoder memory at s + j; the readout is trained on every rolled memory
  against y[s+j].

  Args and returns as `smt_loss`; metrics include the rollout MSE at its last supervised step.
  """
  models = build_models(cfg)
  d = cfg.dmt
  x, y = batch["x"], batch["y"]
  batch_size, length = x.shape
  td = rollout_length(cfg, length)
  starts = rollout_starts(rng, batch_size, length, cfg)
  steps = starts[:, None] + jnp.arange(1, td + 1)  # (B, Td) positions of rolled memories
  supervised = jnp.arange(d.k, td + 1, d.k)  # rollout steps j with an encoder target

  positions = jnp.concatenate([starts[:, None], starts[:, None] + supervised], axis=1)
  mems = encoder_memories(models, params, x, positions)
  mems = jax.lax.stop_gradient(mems)  # Fixed DAgger labels: no gradient reaches the encoder.
  m_start, targets = mems[:, 0], mems[:, 1:]

  inputs = jnp.take_along_axis(x, steps, axis=1)
  rolled = rollout(
    lambda m, xt: models.step(params, m, xt),
    m_start,
    inputs.T,
    backprop_through_rollout=d.backprop_through_rollout,
    remat=d.remat,
  )
  rolled = jnp.swapaxes(rolled, 0, 1)  # (B, Td, Z)
  errors = jnp.mean(jnp.square(rolled[:, supervised - 1] - targets), axis=(0, 2))
  loss_dyn = jnp.mean(errors)

  logits = over_time(lambda m: models.read(params, m))(jax.lax.stop_gradient(rolled))
  labels = jnp.take_along_axis(y, steps, axis=1)
  loss_readout, num_labels = losses.masked_cross_entropy(logits, labels)
  loss = d.coef_dyn * loss_dyn + d.coef_readout * loss_readout
  return loss, {
    "loss": loss,
    "loss_dyn": loss_dyn,
    "loss_readout": loss_readout,
    "acc": losses.masked_accuracy(logits, labels),
    "drift_last": errors[-1],
    "num_labels": num_labels,
  }
