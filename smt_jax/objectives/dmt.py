"""DAgger Memory Training: the updater rolls out on its own memories and is regressed onto the
encoder's memories along the way. The loss also holds the readout's cross-entropy on those
on-policy memories; it trains the readout only where train.trainable includes it (by default DMT
trains the updater alone: objectives.methods.trainable_groups)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smt_jax.models import build_models
from smt_jax.objectives import losses
from smt_jax.objectives.rollout import regrow
from smt_jax.objectives.smt import uniformity_of
from smt_jax.objectives.solvers import rollout_with
from smt_jax.objectives.windows import encoder_memories, futures, memories_at, over_time


def rollout_length(cfg: ml_collections.ConfigDict, length: int) -> int:
  """Td: cfg.dmt.Td, or with Td = 0 the rest of the sequence after dmt.start (T - 1 - start;
  from m_empty, all T tokens)."""
  return cfg.dmt.Td or length - 1 - cfg.dmt.start


def gradient_path_length(cfg: ml_collections.ConfigDict, length: int) -> int:
  """The most updater applications a DMT gradient passes through on length-`length` sequences:
  the rollout's updates (Td, or Td - 1 with dmt.include_start), at most dmt.grad_steps."""
  updates = rollout_length(cfg, length) - (1 if cfg.dmt.include_start else 0)
  return min(cfg.dmt.grad_steps or updates, updates)


def rollout_starts(rng: jax.Array, batch_size: int, length: int, cfg: ml_collections.ConfigDict):
  """Start positions s (B,), -1 = m_empty: cfg.dmt.start, or with dmt.random_start uniform per
  sequence in [-1, T - 1 - Td]."""
  if not cfg.dmt.random_start:
    return jnp.full((batch_size,), cfg.dmt.start, jnp.int32)
  return jax.random.randint(rng, (batch_size,), -1, length - cfg.dmt.Td)


def dmt_loss(params: dict, batch: dict, rng: jax.Array, cfg: ml_collections.ConfigDict):
  """coef_dyn * MSE(rolled memories every k steps, encoder memories) + coef_readout * CE.

  From the encoder memory m_s (s = -1: m_empty, the memory of the empty past), the updater reads
  x[s+1 .. s+Td] (a `lax.scan`), producing memories at s+1 .. s+Td. Gradients run back through
  the rollout (dmt.grad_steps = 0), or through blocks of g = dmt.grad_steps updates with a
  stop-gradient on the memory entering updates 1, g + 1, 2g + 1, .. (g = 1: before every
  update). Steps j = k, 2k, .. <= Td are regressed onto the encoder memory at s + j; the readout
  reads every rolled memory against y[s+j] (its loss reaches the
  readout's parameters only, never the memories). With dmt.include_start (the original's
  alignment) the steps are j = 0 .. Td - 1 instead: step 0 is m_s itself, the MSE covers
  j = 0, k, .. < Td. dmt.coef_dec and dmt.coef_unif add the decoder's cross-entropy and the
  whole-memory uniformity of the target memories, as the original's DMT loss does. With a fixed
  start the targets' windows are encoded in model.teacher.buckets length classes (`memories_at`).

  Args and returns as `smt_loss`; metrics include the rollout MSE at its last supervised step.
  """
  models = build_models(cfg)
  d = cfg.dmt
  x, y = batch["x"], batch["y"]
  batch_size, length = x.shape
  td = rollout_length(cfg, length)
  starts = rollout_starts(rng, batch_size, length, cfg)
  first = 0 if d.include_start else 1  # Rollout step of the first readout / MSE memory.
  steps = starts[:, None] + jnp.arange(first, first + td)  # (B, Td) memory positions
  supervised = np.arange(first * d.k, td + first, d.k)  # rollout steps j with a target

  offsets = np.concatenate([[0], supervised])  # rollout steps of m_start and of the targets
  if d.random_start:
    mems = encoder_memories(models, params, x, starts[:, None] + offsets)
  else:  # The same positions in every row: short windows need no padding to Tc (buckets).
    mems = memories_at(models, params, x, d.start + offsets)
  mems = jax.lax.stop_gradient(mems)  # Fixed DAgger labels: no gradient reaches the encoder.
  m_start, targets = mems[:, 0], mems[:, 1:]

  inputs = jnp.take_along_axis(x, starts[:, None] + jnp.arange(1, td + first), axis=1)
  step = lambda p: lambda m, xt: models.step(p, m, xt)
  per_step = d.grad_steps == 1  # The rollout then runs without gradients and `regrow` gives the
  #                               supervised memories theirs (one update each).
  rolled, solver_metrics = rollout_with(
    d.solver,
    step(jax.lax.stop_gradient(params) if per_step else params),
    m_start,
    inputs.T,
    remat=d.remat and not per_step,
    truncate=0 if per_step else d.grad_steps,  # Block truncation: paths of 1 .. grad_steps.
    newton=cfg.newton,
  )
  chain = jnp.concatenate([m_start[:, None], jnp.swapaxes(rolled, 0, 1)], axis=1)  # steps 0..
  predicted = regrow(step(params), chain, inputs, supervised) if per_step else chain[:, supervised]
  errors = jnp.mean(jnp.square(predicted - targets), axis=(0, 2))
  loss_dyn = jnp.mean(errors)

  read = lambda m: models.read(params, m)
  logits = over_time(read)(jax.lax.stop_gradient(chain[:, first:]))  # the Td rolled memories
  labels = jnp.take_along_axis(y, steps, axis=1)
  loss_readout, num_labels = losses.masked_cross_entropy(logits, labels)
  loss = d.coef_dyn * loss_dyn + d.coef_readout * loss_readout
  extra = {}
  if d.coef_dec:  # The decoder's loss on the target memories (the original adds it).
    fut_inputs, fut_targets = futures(x, y, starts[:, None] + supervised, cfg.model.teacher.Tf)
    dec_logits = over_time(lambda m, xf: models.decode(params, m, xf))(targets, fut_inputs)
    extra["loss_dec"], _ = losses.masked_cross_entropy(dec_logits, fut_targets)
    loss = loss + d.coef_dec * extra["loss_dec"]
  if d.coef_unif:  # Uniformity of the target memories as whole vectors (the original's).
    extra["loss_unif"] = uniformity_of(rng, targets, 1, cfg.smt.unif_tokens)
    loss = loss + d.coef_unif * extra["loss_unif"]
  return loss, {
    "loss": loss,
    "loss_dyn": loss_dyn,
    "loss_readout": loss_readout,
    "acc": losses.masked_accuracy(logits, labels),
    "drift_last": errors[-1],
    "num_labels": num_labels,
    **extra,
    **solver_metrics,
  }
