"""The optimizer: global-norm clipping -> AdamW on a learning-rate schedule, for the trainable
parameter groups only (the others get no update and no optimizer state)."""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from smt_jax.models import RNN_GROUPS, TEACHER_GROUPS
from smt_jax.objectives import trainable_groups

SCHEDULES = ("warmup_constant", "warmup_cosine")


def learning_rate(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup to optim.lr, then constant or cosine decay to lr * final_lr_frac."""
  o = cfg.optim
  if o.schedule == "warmup_constant":
    return optax.join_schedules(
      [optax.linear_schedule(0.0, o.lr, o.warmup_steps), optax.constant_schedule(o.lr)],
      [o.warmup_steps],
    )
  return optax.warmup_cosine_decay_schedule(
    0.0,
    o.lr,
    o.warmup_steps,
    max(cfg.train.num_steps, o.warmup_steps + 1),
    end_value=o.lr * o.final_lr_frac,
  )


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Updates for a {group: tree} of parameters; frozen groups are masked to zero updates."""
  o = cfg.optim
  trainable = trainable_groups(cfg)
  matrices = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  if o.decay_all:  # torch.optim.AdamW over every parameter, as the original.
    adamw = optax.chain(
      optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps),
      decay_all_weights(o.weight_decay),
      optax.scale_by_learning_rate(learning_rate(cfg)),
    )
  else:
    adamw = optax.adamw(
      learning_rate(cfg), b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=matrices
    )
  if o.clip_norm > 0 and o.clip_per_model:  # The teacher and the RNN each clipped on its own.
    clip = per_model_clip(o.clip_norm)
  elif o.clip_norm > 0:
    clip = optax.clip_by_global_norm(o.clip_norm)
  inner = optax.chain(clip, adamw) if o.clip_norm > 0 else adamw
  labels = lambda params: {
    g: jax.tree.map(lambda _: "train" if g in trainable else "frozen", tree)
    for g, tree in params.items()
  }
  return optax.multi_transform({"train": inner, "frozen": optax.set_to_zero()}, labels)


def per_model_clip(max_norm: float) -> optax.GradientTransformation:
  """Clips the teacher groups' (encoder, decoder) and the RNN groups' (updater, readout)
  gradients each to global norm max_norm, as torch's clip_grad_norm_ once per module."""

  def update(updates, state, params=None):
    del params
    out = dict(updates)
    for groups in (TEACHER_GROUPS, RNN_GROUPS):
      part = {g: updates[g] for g in groups if g in updates}
      norm = optax.global_norm(part)
      scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))  # torch's formula, with its 1e-6.
      out.update(jax.tree.map(lambda u: u * scale.astype(u.dtype), part))
    return out, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def decay_all_weights(weight_decay: float) -> optax.GradientTransformation:
  """Adds weight_decay * (p - c) to every update: c = 1 for RMSNorm gains ("scale" leaves, so
  they decay towards 1, as x-transformers' unit-offset gains decay towards 0), else 0."""

  def update(updates, state, params):
    def decay(path, u, p):
      centre = 1.0 if getattr(path[-1], "key", None) == "scale" else 0.0
      return u + weight_decay * (p - centre)

    return jax.tree_util.tree_map_with_path(decay, updates, params), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
