"""The optimizer: global-norm clipping -> AdamW on a learning-rate schedule, for the trainable
parameter groups only (the others get no update and no optimizer state)."""

import jax
import ml_collections
import optax

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
  adamw = optax.adamw(
    learning_rate(cfg), b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=matrices
  )
  inner = optax.chain(optax.clip_by_global_norm(o.clip_norm), adamw) if o.clip_norm > 0 else adamw
  labels = lambda params: {
    g: jax.tree.map(lambda _: "train" if g in trainable else "frozen", tree)
    for g, tree in params.items()
  }
  return optax.multi_transform({"train": inner, "frozen": optax.set_to_zero()}, labels)
