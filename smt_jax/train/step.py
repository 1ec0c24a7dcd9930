"""Pure step functions: data as a function of (seed, step), the train step and the eval step.

`train_step(state, batch, rng) -> (state, metrics)` is pure and un-jitted so that callers can wrap
it with shardings; `make_step_fn` jits it over a device mesh (state donated, batch rows split
over the devices), fusing sampling into the same program when one process samples a jittable
dataset.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from smt_jax import parallel
from smt_jax.eval.read import lm_read_stats, rnn_read_stats, teacher_read_stats
from smt_jax.models import build_models, readout_from_decoder
from smt_jax.objectives import (
  encoder_prefix,
  method_of,
  read_start,
  reads_through_decoder,
  trainable_groups,
)
from smt_jax.train.optimizer import learning_rate


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: updates applied so far.
  params: dict  # {"encoder", "decoder", "updater", "readout"} parameter trees.
  opt_state: Any  # Optimizer state (only trainable groups hold moments).


@flax.struct.dataclass
class Keys:
  """The run's independent PRNG streams, all derived from cfg.seed."""

  params: jax.Array
  data: jax.Array
  loss: jax.Array
  eval_data: jax.Array
  eval_loss: jax.Array

  @classmethod
  def from_seed(cls, seed: int) -> "Keys":
    return cls(*jax.random.split(jax.random.key(seed), 5))


def batch_for_step(
  dataset, key: jax.Array, step, batch_size: int, length: int, process_index: int = 0
) -> dict:
  """The batch of `step` for this process: a pure function of (key, step, process_index).

  Returns {"x": int32 (batch_size, length), "y": int32 (batch_size, length)}.
  """
  key = jax.random.fold_in(jax.random.fold_in(key, step), process_index)
  return dataset.sample(key, batch_size, length)


def make_train_step(cfg: ml_collections.ConfigDict, tx: optax.GradientTransformation) -> Callable:
  """The pure update `train_step(state, batch, rng) -> (state, metrics)` of cfg.method.

  The batch (B, T) is split into cfg.train.grad_accum micro-batches whose gradients and metrics
  are averaged before one optimizer update; micro-batch i holds rows i, i + grad_accum, ..., so
  that rows split over devices stay where they are. Frozen groups are returned unchanged.
  """
  objective, trainable = method_of(cfg).loss, trainable_groups(cfg)
  accum, schedule = cfg.train.grad_accum, learning_rate(cfg)
  grad_fn = jax.value_and_grad(lambda p, b, r: objective(p, b, r, cfg), has_aux=True)

  def micro_step(params, batch, rng):
    (_, metrics), grads = grad_fn(params, batch, rng)
    return grads, metrics

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    if accum == 1:
      grads, metrics = micro_step(state.params, batch, rng)
    else:
      micro = jax.tree.map(lambda a: a.reshape(-1, accum, *a.shape[1:]).swapaxes(0, 1), batch)
      summed = lambda acc, i: (
        jax.tree.map(
          jnp.add,
          acc,
          micro_step(state.params, jax.tree.map(lambda a: a[i], micro), jax.random.fold_in(rng, i)),
        ),
        None,
      )
      zeros = jax.eval_shape(micro_step, state.params, jax.tree.map(lambda a: a[0], micro), rng)
      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
      total, _ = jax.lax.scan(summed, zeros, jnp.arange(accum))
      grads, metrics = jax.tree.map(lambda a: a / accum, total)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = {
      g: optax.apply_updates(p, updates[g]) if g in trainable else p
      for g, p in state.params.items()
    }
    metrics = {
      **metrics,
      "grad_norm": optax.global_norm({g: grads[g] for g in trainable}),
      "lr": schedule(state.step),
    }
    return TrainState(state.step + 1, params, opt_state), metrics

  return train_step


def make_step_fn(
  cfg: ml_collections.ConfigDict,
  dataset,
  train_step: Callable,
  keys: Keys,
  mesh: Mesh,
  state_sharding,
):
  """`step_fn(state, step) -> (state, metrics)`: the batch and loss rng of `step`, one update.

  Each process samples its cfg.train.batch_size / process_count rows from (seed, step, process
  index); the global batch's rows are split over `mesh` (smt_jax.parallel), the state keeps
  `state_sharding` and the metrics are replicated.
  """
  size, length = cfg.train.batch_size // jax.process_count(), cfg.data.T
  batch_of = lambda step: batch_for_step(
    dataset, keys.data, step, size, length, jax.process_index()
  )
  rows = parallel.batch_sharding(mesh)

  def update(state, batch, step):
    batch = jax.lax.with_sharding_constraint(batch, rows)
    return train_step(state, batch, jax.random.fold_in(keys.loss, step))

  jit = functools.partial(
    jax.jit, donate_argnums=0, out_shardings=(state_sharding, parallel.replicated(mesh))
  )
  if dataset.jittable and jax.process_count() == 1:
    return jit(lambda state, step: update(state, batch_of(step), step))
  jitted, sample = jit(update), jax.jit(batch_of) if dataset.jittable else batch_of
  return lambda state, step: jitted(
    state, parallel.global_batch(sample(step), mesh, cfg.train.batch_size), step
  )


def make_eval_fn(cfg: ml_collections.ConfigDict, mesh: Mesh | None = None) -> Callable:
  """Jitted `eval_fn(params, batch, rng) -> (objective metrics, read stats)`.

  The objective metrics are the method's scalar metrics on the batch; the read stats are
  {"rnn": ..., "rnn_enc": ..., "teacher": ...} per-position sums (`smt_jax.eval.read`): the
  RNN's teacher-forced read from x[0] (from `read_start(cfg)`) and, for methods with a teacher,
  its read after an encoder prefix of `encoder_prefix(cfg)` tokens and the teacher's. The RNN
  reads through a copy of the decoder where `reads_through_decoder(cfg)`. Given a `mesh`, the
  results are replicated over it (readable on every process).
  """
  method, models = method_of(cfg), build_models(cfg)
  objective, copy_decoder, prefix = method.loss, reads_through_decoder(cfg), encoder_prefix(cfg)

  def eval_fn(params, batch, rng):
    _, metrics = objective(params, batch, rng, cfg)
    rnn_params = readout_from_decoder(params) if copy_decoder else params
    solve = dict(solver=cfg.eval.solver, newton=cfg.newton)
    if method.recurrent:
      stats = {"rnn": rnn_read_stats(models, rnn_params, batch, read_start(cfg), **solve)}
    else:  # The Transformer LM baseline: its own read from x[0], under the same key.
      stats = {"rnn": lm_read_stats(models, params, batch)}
    if method.has_teacher:
      stats["rnn_enc"] = rnn_read_stats(models, rnn_params, batch, prefix, **solve)
      stats["teacher"] = teacher_read_stats(models, params, batch)
    return metrics, stats

  return jax.jit(eval_fn, out_shardings=None if mesh is None else parallel.replicated(mesh))
