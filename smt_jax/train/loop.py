"""`train_and_evaluate(cfg, workdir)`: one run of SMT, DMT or BPTT, resumable from its workdir.

Workdir layout: config.json (the resolved config), metrics.jsonl (train and eval rows),
checkpoints/STEP/ (orbax), curves.png (learning curves, written at the end).
"""

import pathlib
import sys
import time

import jax
import ml_collections
import numpy as np
import tqdm

from smt_jax import checkpointing, parallel
from smt_jax.data import make_dataset
from smt_jax.errors import ConfigError
from smt_jax.eval import suite as eval_suite
from smt_jax.eval.read import add_stats, summarize
from smt_jax.models import init_params, readout_from_decoder
from smt_jax.train.metrics import MetricWriter, first_nonfinite, mean_metrics, plot_curves
from smt_jax.train.optimizer import make_optimizer
from smt_jax.train.step import (
  Keys,
  TrainState,
  batch_for_step,
  make_eval_fn,
  make_step_fn,
  make_train_step,
)
from smt_jax.train.validate import validate


class NonFiniteLossError(RuntimeError):
  """The loss or gradient norm became NaN or Inf; the message names the step."""


def initial_params(cfg: ml_collections.ConfigDict, key: jax.Array) -> dict:
  """Fresh parameters, or those of ckpt.init_from (readout copied from the decoder if asked).

  Raises ConfigError when the checkpoint's parameters do not fit this config's models.
  """
  params = init_params(cfg, key)
  if not cfg.ckpt.init_from:
    return params
  loaded, _ = checkpointing.load_params(cfg.ckpt.init_from)
  shapes = lambda tree: jax.tree.map(lambda a: (a.shape, str(a.dtype)), tree)
  for group in params:
    if group not in loaded or shapes(loaded[group]) != shapes(params[group]):
      raise ConfigError(
        f"ckpt.init_from={cfg.ckpt.init_from!r}: its {group!r} parameters do not match this "
        "config's model; use the same model.* fields as the run that wrote it."
      )
  loaded = {g: loaded[g] for g in params}
  return readout_from_decoder(loaded) if cfg.model.rnn.readout_from_decoder else loaded


def initial_state(cfg: ml_collections.ConfigDict, tx, keys: Keys, mesh, ckpt, start: int):
  """The TrainState of update `start` placed on `mesh` (smt_jax.parallel.state_shardings):
  restored from ckpt's step `start` if > 0, else fresh or ckpt.init_from parameters."""
  abstract = jax.eval_shape(lambda: init_params(cfg, keys.params))
  abstract_opt = jax.eval_shape(tx.init, abstract)
  shardings = parallel.state_shardings(mesh, (abstract, abstract_opt))
  if start:
    params, opt_state = ckpt.restore(
      start, *parallel.abstract_with_shardings((abstract, abstract_opt), shardings)
    )
  else:
    params = parallel.put_global(initial_params(cfg, keys.params), shardings[0])
    opt_state = jax.jit(tx.init, out_shardings=shardings[1])(params)
  step = parallel.put_global(np.asarray(start, np.int32), parallel.replicated(mesh))
  return TrainState(step, params, opt_state)


def evaluate(eval_fn, params, dataset, cfg: ml_collections.ConfigDict, keys: Keys, mesh) -> dict:
  """Scalar metrics over cfg.train.eval_batches fixed held-out batches (the same every call, on
  every process, split over `mesh`): the objective's metrics (averaged) and
  "{rnn,teacher}_{loss,acc}" over all labelled tokens."""
  history, totals = [], {}
  for i in range(cfg.train.eval_batches):
    batch = batch_for_step(dataset, keys.eval_data, i, cfg.train.eval_batch_size, cfg.data.T)
    batch = parallel.global_batch(batch, mesh, cfg.train.eval_batch_size)
    metrics, stats = eval_fn(params, batch, jax.random.fold_in(keys.eval_loss, i))
    history.append(metrics)
    totals = {name: add_stats(totals.get(name), s) for name, s in stats.items()}
  results = mean_metrics(jax.device_get(history))
  for name, stats in totals.items():
    summary = summarize(stats)
    results.update({f"{name}_loss": summary["loss"], f"{name}_acc": summary["acc"]})
  return results


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Trains cfg.method for cfg.train.num_steps, resuming from workdir's latest checkpoint, else
  from ckpt.init_from, else from scratch; returns the final eval metrics with "step" and
  "wall_s" (this call's wall-clock seconds)."""
  start_time = time.time()
  validate(cfg)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  main = jax.process_index() == 0
  if main:
    (workdir / "config.json").write_text(cfg.to_json_best_effort(indent=2) + "\n")

  keys = Keys.from_seed(cfg.seed)
  train_data, test_data = make_dataset(cfg.data, "train"), make_dataset(cfg.data, "test")
  tx = make_optimizer(cfg)
  ckpt = checkpointing.Checkpointer(workdir / checkpointing.SUBDIR, cfg.ckpt.keep)
  start = ckpt.latest_step() or 0  # Precedence: this workdir -> ckpt.init_from -> scratch.
  mesh = parallel.make_mesh(cfg.mesh)
  state = initial_state(cfg, tx, keys, mesh, ckpt, start)

  writer = MetricWriter(workdir / "metrics.jsonl")
  if main:
    writer.truncate_after(start)
  step_fn = make_step_fn(
    cfg, train_data, make_train_step(cfg, tx), keys, mesh, parallel.state_shardings(mesh, state)
  )
  eval_fn = make_eval_fn(cfg, mesh)
  total = cfg.train.num_steps
  bar = tqdm.tqdm(
    total=total,
    initial=start,
    unit="step",
    file=sys.stderr,
    dynamic_ncols=True,
    desc=f"{cfg.method} {workdir.name}",
    disable=not (main and cfg.log.progress and sys.stderr.isatty()),
  )
  history, last_log, last_time = [], start, time.time()
  try:
    for step in range(start, total):
      state, metrics = step_fn(state, step)
      history.append(metrics)
      bar.update(1)
      done = step + 1
      if done % cfg.log.every == 0 or done == total:
        history = jax.device_get(history)
        bad = first_nonfinite(history, last_log)
        if bad is not None:
          saved = ckpt.latest_step()
          raise NonFiniteLossError(
            f"step {bad}: the loss or gradient norm is NaN/Inf; stopping. The last good "
            f"checkpoint ({'none' if saved is None else f'step {saved}'} in "
            f"{ckpt.manager.directory}) "
            "is intact: lower optim.lr or optim.clip_norm, then re-run to resume from it."
          )
        train = mean_metrics(history)
        train["steps_per_sec"] = (done - last_log) / (time.time() - last_time)
        if main:
          writer.write(done, "train", train)
        bar.set_postfix(loss=f"{train['loss']:.4f}")
        history, last_log, last_time = [], done, time.time()
      if done % cfg.train.eval_every == 0 or done == total:
        results = evaluate(eval_fn, state.params, test_data, cfg, keys, mesh)
        if main:
          writer.write(done, "eval", results)
      if done % cfg.ckpt.every == 0 or done == total:
        ckpt.save(done, state.params, state.opt_state)
  finally:
    bar.close()
    ckpt.close()
  if start == total:  # Already finished: report without logging again.
    results = evaluate(eval_fn, state.params, test_data, cfg, keys, mesh)
  if main and cfg.log.plot:
    plot_curves(workdir / "metrics.jsonl", workdir / "curves.png")
  if cfg.train.final_eval:
    params = parallel.to_host(state.params, mesh)  # Every process takes part in the gather.
    if main:
      print(eval_suite.format_table(eval_suite.evaluate(cfg, params, str(workdir), total)))
  return {"step": total, **results, "wall_s": time.time() - start_time}
