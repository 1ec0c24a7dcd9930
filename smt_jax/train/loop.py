"""`train_and_evaluate(cfg, workdir)`: one run of SMT, DMT or BPTT, resumable from its workdir.

Workdir layout: config.json (the config of the run that wrote the newest checkpoint),
metrics.jsonl (train and eval rows), checkpoints/STEP/ (orbax), curves.png (learning curves,
written at the end), .lock (while a run holds it), events.out.tfevents.* (log.tensorboard),
best/STEP/ and best/eval.json (ckpt.keep_best: the best validation evaluation's parameters).
"""

import contextlib
import json
import math
import pathlib
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from smt_jax import checkpointing, parallel
from smt_jax.config import changed_fields
from smt_jax.data import make_dataset
from smt_jax.errors import ConfigError
from smt_jax.eval import suite as eval_suite
from smt_jax.eval.read import add_stats, summarize
from smt_jax.models import init_params, readout_from_decoder
from smt_jax.train import workdir as workdir_lib
from smt_jax.train.metrics import (
  MetricWriter,
  ProgressLog,
  first_nonfinite,
  mean_metrics,
  plot_curves,
  read_metrics,
)
from smt_jax.train.optimizer import make_optimizer
from smt_jax.train.step import (
  Keys,
  TrainState,
  batch_for_step,
  make_eval_fn,
  make_step_fn,
  make_train_step,
)
from smt_jax.train.tensorboard import TensorBoardWriter
from smt_jax.train.validate import validate
from smt_jax.train.workdir import say

BEST = "best"  # workdir/best: ckpt.keep_best's checkpoint (and its final evaluation).


class BestKeeper:
  """Keeps workdir/best/STEP: the parameters (and optimizer state) of the evaluation with the
  best value so far of the validation metric `metric` (lowest *_loss, highest *_acc).

  On a resume, the best so far is that of metrics.jsonl's eval rows up to the restored step
  `start`; checkpoints in workdir/best after `start` describe evaluations that the resume drops
  (and repeats), so they are removed first.
  """

  def __init__(self, workdir: pathlib.Path, metric: str, rows: list[dict], start: int):
    self.metric, self.sign = metric, 1.0 if metric.endswith("_loss") else -1.0
    directory = workdir / BEST
    if jax.process_index() == 0 and directory.is_dir():
      for path in directory.iterdir():
        if path.name.isdigit() and int(path.name) > start:
          shutil.rmtree(path)
    checkpointing.sync_processes("smt_jax.train.loop.BestKeeper")
    self.ckpt = checkpointing.Checkpointer(directory, keep=1)
    earlier = [
      self.sign * r[metric]
      for r in rows
      if r["split"] == "eval" and r["step"] <= start and metric in r
    ]
    self.best = min(earlier, default=math.inf)

  def offer(self, step: int, results: dict, state: TrainState) -> None:
    """Saves `state` as the best if `results` (an evaluation's metrics) improve on it."""
    value = self.sign * results[self.metric]
    if value < self.best:
      self.best = value
      self.ckpt.save(step, state.params, state.opt_state)

  def close(self) -> None:
    self.ckpt.close()


class NonFiniteLossError(RuntimeError):
  """The loss or gradient norm became NaN or Inf; the message names the step."""


def initial_params(cfg: ml_collections.ConfigDict, key: jax.Array) -> dict:
  """Fresh parameters, or those of ckpt.init_from (its ckpt.init_groups, the rest fresh; the
  readout copied from the decoder if asked).

  Raises ConfigError when the checkpoint's parameters do not fit this config's models.
  """
  params = init_params(cfg, key)
  if not cfg.ckpt.init_from:
    return params
  loaded, _ = checkpointing.load_params(cfg.ckpt.init_from)
  shapes = lambda tree: jax.tree.map(lambda a: (a.shape, str(a.dtype)), tree)
  taken = tuple(cfg.ckpt.init_groups) or tuple(params)
  for group in taken:
    if group not in loaded or shapes(loaded[group]) != shapes(params[group]):
      raise ConfigError(
        f"ckpt.init_from={cfg.ckpt.init_from!r}: its {group!r} parameters do not match this "
        "config's model; use the same model.* fields as the run that wrote it, or leave the "
        "group out of ckpt.init_groups to start it fresh."
      )
  params = {g: loaded[g] if g in taken else params[g] for g in params}
  return readout_from_decoder(params) if cfg.model.rnn.readout_from_decoder else params


def initial_state(
  cfg: ml_collections.ConfigDict, tx, keys: Keys, mesh, restored=None
) -> TrainState:
  """The TrainState placed on `mesh` (smt_jax.parallel.state_shardings): that of `restored` (a
  checkpointing.Restored) if given, else fresh or ckpt.init_from parameters at update 0."""
  if restored is not None:
    params, opt_state, start = restored.params, restored.opt_state, restored.step
  else:
    abstract, shardings = abstract_state(cfg, tx, keys, mesh)
    params = parallel.put_global(initial_params(cfg, keys.params), shardings[0])
    opt_state = jax.jit(tx.init, out_shardings=shardings[1])(params)
    start = 0
  step = parallel.put_global(np.asarray(start, np.int32), parallel.replicated(mesh))
  return TrainState(step, params, opt_state)


def training_step_fn(cfg: ml_collections.ConfigDict, tx, keys: Keys, mesh, state, train_data):
  """step_fn(state, step) -> (state, metrics): cfg's update jitted on `mesh` with `state`'s
  shardings (state donated), the batch of each step drawn from `train_data`."""
  train_step = make_train_step(cfg, tx)
  return make_step_fn(
    cfg, train_data, train_step, keys, mesh, parallel.state_shardings(mesh, state)
  )


def fresh_start(cfg: ml_collections.ConfigDict, mesh=None) -> tuple:
  """(TrainState at update 0, its step_fn) of cfg on `mesh` (default: cfg.mesh's), as a run
  with no checkpoint in its workdir starts: fresh or ckpt.init_from parameters."""
  tx, keys = make_optimizer(cfg), Keys.from_seed(cfg.seed)
  mesh = parallel.make_mesh(cfg.mesh) if mesh is None else mesh
  state = initial_state(cfg, tx, keys, mesh)
  return state, training_step_fn(cfg, tx, keys, mesh, state, make_dataset(cfg.data, "train"))


def abstract_state(cfg: ml_collections.ConfigDict, tx, keys: Keys, mesh):
  """((params, opt_state) as ShapeDtypeStructs with their shardings on `mesh`, the shardings)."""
  abstract = jax.eval_shape(lambda: init_params(cfg, keys.params))
  abstract_opt = jax.eval_shape(tx.init, abstract)
  shardings = parallel.state_shardings(mesh, (abstract, abstract_opt))
  return parallel.abstract_with_shardings((abstract, abstract_opt), shardings), shardings


def evaluate(eval_fn, params, dataset, cfg: ml_collections.ConfigDict, keys: Keys, mesh) -> dict:
  """Scalar metrics over cfg.train.eval_batches fixed batches of `dataset` (the trainer passes
  its "val" split: the same batches every call, on every process, split over `mesh`): the
  objective's metrics (averaged) and "{rnn,teacher}_{loss,acc}" over all labelled tokens; for a
  synthetic task also "ceiling_acc", the accuracy of its Bayes-optimal predictor, and
  "{rnn,teacher}_acc_sure" over the answers the past determines (SyntheticTask.optimal_guesses;
  all of them on most tasks, where these equal the plain accuracies).
  These guide choices; reported accuracies come from the final evaluation's test split."""
  history, totals, sure_totals = [], {}, {}
  guesses = getattr(dataset, "optimal_guesses", None)
  ceiling = [0, 0]  # Right answers of the Bayes-optimal predictor; labels.
  for i in range(cfg.train.eval_batches):
    batch = batch_for_step(dataset, keys.eval_data, i, cfg.train.eval_batch_size, cfg.data.T)
    sure = None
    if guesses is not None:
      best = jax.vmap(guesses)(batch["x"], batch["y"])
      ceiling[0] += int(best["hit"].sum())
      ceiling[1] += int((batch["y"] >= 0).sum())
      sure = {**batch, "y": jnp.where(best["sure"], batch["y"], -1)}
      unsure = bool((sure["y"] != batch["y"]).any())
    batch = parallel.global_batch(batch, mesh, cfg.train.eval_batch_size)
    key = jax.random.fold_in(keys.eval_loss, i)
    metrics, stats = eval_fn(params, batch, key)
    history.append(metrics)
    totals = {name: add_stats(totals.get(name), s) for name, s in stats.items()}
    if sure is not None:  # The reads over the sure answers: again where some are not.
      if unsure:
        sure = parallel.global_batch(sure, mesh, cfg.train.eval_batch_size)
        stats = eval_fn(params, sure, key)[1]
      sure_totals = {name: add_stats(sure_totals.get(name), s) for name, s in stats.items()}
  results = mean_metrics(jax.device_get(history))
  for name, stats in totals.items():
    summary = summarize(stats)
    results.update({f"{name}_loss": summary["loss"], f"{name}_acc": summary["acc"]})
  for name, stats in sure_totals.items():
    results[f"{name}_acc_sure"] = summarize(stats)["acc"]
  if ceiling[1]:
    results["ceiling_acc"] = ceiling[0] / ceiling[1]
  return results


def stop_reached(cfg: ml_collections.ConfigDict, results: dict) -> bool:
  """Whether an evaluation's `results` reach train.stop_at_value in train.stop_at_metric (the
  early stop at a stated accuracy; never when stop_at_metric is "")."""
  metric = cfg.train.stop_at_metric
  return bool(metric) and results[metric] >= cfg.train.stop_at_value


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Trains cfg.method for cfg.train.num_steps, resuming from workdir's newest readable checkpoint,
  else from ckpt.init_from, else from scratch; returns the final eval metrics with "step" and
  "wall_s": the run's wall-clock seconds since step 0, summed over the calls that trained it
  (train rows log it as "elapsed_s"), plus this call's. The eval metrics are those of the
  validation split; the final evaluation (train.final_eval) writes the test split's to
  workdir/eval.json.

  The workdir is locked for the call. Nothing in it changes until the checkpoint is restored and
  matches the config; config.json is rewritten (atomically) only with the first checkpoint this
  call saves. SIGINT/SIGTERM stop it between steps (a save in progress completes) with
  Interrupted. Bad input raises ConfigError.
  """
  start_time = time.time()
  validate(cfg)
  workdir = workdir_lib.prepare_workdir(workdir)
  lock = workdir_lib.WorkdirLock(workdir)
  with contextlib.ExitStack() as stack:
    if jax.process_index() == 0:
      stack.enter_context(lock)

    def on_force_exit():  # A second signal: the process ends at once, without unwinding.
      if jax.process_index() == 0:
        _drop_orphan_metrics(workdir)
      lock.release()

    stop = stack.enter_context(workdir_lib.deferred_interrupts(on_force_exit))
    return _train(cfg, workdir, stop, start_time)


def _drop_orphan_metrics(workdir: pathlib.Path) -> None:
  """Removes metrics.jsonl when no checkpoint backs it: the rows of a run that saved nothing
  (the workdir had no rows when it started), so that the next run starts over cleanly."""
  path = workdir / "metrics.jsonl"
  if not _has_checkpoints(workdir) and path.exists():
    path.unlink()
    say(f"no checkpoint was saved: removed {path.name}, so the next run starts over.")


class Interrupted(Exception):
  """SIGINT or SIGTERM stopped training between steps; the message says where to resume.
  `signum` is the signal's number (a launcher exits with 128 + signum)."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


def _has_checkpoints(workdir: pathlib.Path) -> bool:
  directory = workdir / checkpointing.SUBDIR
  return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def _mismatch_message(cfg, workdir: pathlib.Path, error: checkpointing.ShapeMismatch) -> str:
  """The shape-mismatch error of a resume: the config fields that differ from config.json (the
  config of the run that wrote the checkpoint), else the parameters that differ, and the fix."""
  fields = []
  try:
    diffs = changed_fields(json.loads((workdir / "config.json").read_text()), cfg)
    relevant = [
      k for k in diffs if k.split(".")[0] in ("model", "data") or k in ("method", "train.trainable")
    ]
    fields = [f"{k}: checkpoint {diffs[k][0]!r}, config {diffs[k][1]!r}" for k in relevant or diffs]
  except (OSError, ValueError, AttributeError):
    pass
  return (
    f"{workdir}: checkpoint {error.step} was written by a run of another model or optimizer, so "
    f"this config cannot resume it ({'; '.join(fields or error.lines)}). Nothing in the workdir "
    "was changed. To train this config, drop the changed overrides, or use a new --workdir "
    f"(with --config.ckpt.init_from={workdir} to start from these parameters where the model "
    "fields are the same)."
  )


def _nonfinite(step: int, what: str, ckpt) -> NonFiniteLossError:
  saved = ckpt.latest_step()
  return NonFiniteLossError(
    f"step {step}: {what} is NaN/Inf; stopping. The last good checkpoint "
    f"({'none' if saved is None else f'step {saved}'} in {ckpt.directory}) is intact: lower "
    "optim.lr or optim.clip_norm, then re-run to resume from it."
  )


def _train(cfg, workdir: pathlib.Path, stop, start_time: float) -> dict:
  main = jax.process_index() == 0
  metrics_path, config_path = workdir / "metrics.jsonl", workdir / "config.json"
  rows = read_metrics(metrics_path, warn=main)  # Every process: all refuse alike.
  if rows and not _has_checkpoints(workdir):
    raise ConfigError(
      f"{metrics_path} holds {len(rows)} row{'s' * (len(rows) != 1)} (up to step "
      f"{max(r['step'] for r in rows)}) but "
      f"{workdir / checkpointing.SUBDIR} holds no checkpoint, so there is nothing to resume and "
      f"starting over would drop them. To start over, delete or move {metrics_path}; or use a "
      "new --workdir."
    )

  keys = Keys.from_seed(cfg.seed)
  train_data, val_data = make_dataset(cfg.data, "train"), make_dataset(cfg.data, "val")
  tx = make_optimizer(cfg)
  mesh = parallel.make_mesh(cfg.mesh)
  total = cfg.train.num_steps
  ckpt = checkpointing.Checkpointer(workdir / checkpointing.SUBDIR, cfg.ckpt.keep)
  tb, best = None, None
  try:
    (abstract, abstract_opt), _ = abstract_state(cfg, tx, keys, mesh)
    try:  # Precedence: this workdir -> ckpt.init_from -> scratch.
      restored = ckpt.restore_newest(abstract, abstract_opt)
    except checkpointing.ShapeMismatch as e:
      raise ConfigError(_mismatch_message(cfg, workdir, e)) from None
    if restored is not None and restored.skipped:
      for step, reason in restored.skipped:
        say(f"checkpoint {step} skipped: it cannot be read ({reason})")
      moved = ckpt.set_aside([step for step, _ in restored.skipped], workdir)
      say(f"using checkpoint {restored.step}, the newest readable one; moved the others to {moved}")
    start = 0 if restored is None else restored.step
    if restored is not None:
      say(
        f"already at step {start}: evaluating only"
        if start >= total
        else f"resuming from step {start} of {total}"
      )
    elif cfg.ckpt.init_from:
      say(f"starting from ckpt.init_from={cfg.ckpt.init_from} (step 0 of {total})")
    else:
      say(f"starting from scratch (step 0 of {total})")
    state = initial_state(cfg, tx, keys, mesh, restored)

    writer = MetricWriter(metrics_path)
    # config.json describes the run that wrote the newest checkpoint: rewritten with the first
    # checkpoint this call saves (at once when there is none yet to describe).
    config_pending = False
    if main:
      dropped = writer.truncate_after(start)
      if dropped:
        again = "; training logs them again" if start < total else ""
        say(f"metrics.jsonl: dropped {dropped} row(s) after the restored step {start}{again}")
      if restored is None or not config_path.exists():
        workdir_lib.write_atomic(config_path, cfg.to_json_best_effort(indent=2) + "\n")
      else:
        config_pending = True
      if cfg.log.tensorboard:
        tb = TensorBoardWriter(workdir, start)
    # Wall-clock of earlier calls: the last train row up to the restored step.
    earlier = [r["elapsed_s"] for r in rows if r["step"] <= start and "elapsed_s" in r]
    start_time -= earlier[-1] if earlier else 0.0
    if cfg.ckpt.keep_best:
      best = BestKeeper(workdir, cfg.ckpt.keep_best, rows, start)
    run = _Run(cfg, workdir, stop, ckpt, writer, tb, keys, mesh, config_pending, start_time)
    results = run.train(state, start, train_data, val_data, tx, best)
  except BaseException:
    with contextlib.suppress(Exception):
      ckpt.close()
      if best is not None:
        best.close()
    if main:  # A run that saved nothing leaves no rows behind.
      _drop_orphan_metrics(workdir)
    raise
  finally:
    if tb is not None:
      tb.close()
  return results


class _Run:
  """The training loop of `train_and_evaluate` and what it writes."""

  def __init__(self, cfg, workdir, stop, ckpt, writer, tb, keys, mesh, config_pending, start_time):
    self.start_time = start_time
    self.cfg, self.workdir, self.stop, self.ckpt = cfg, workdir, stop, ckpt
    self.writer, self.tb, self.keys, self.mesh = writer, tb, keys, mesh
    self.config_pending = config_pending
    self.main = jax.process_index() == 0

  def log(self, step: int, split: str, metrics: dict) -> None:
    if self.main:
      self.writer.write(step, split, metrics)
      if self.tb is not None:
        self.tb.write(step, split, metrics)

  def save(self, step: int, state: TrainState) -> None:
    if self.config_pending:  # The config of the run that wrote the newest checkpoint.
      workdir_lib.write_atomic(
        self.workdir / "config.json", self.cfg.to_json_best_effort(indent=2) + "\n"
      )
      self.config_pending = False
    self.ckpt.save(step, state.params, state.opt_state)

  def train(self, state: TrainState, start: int, train_data, val_data, tx, best) -> dict:
    cfg, keys, mesh, ckpt = self.cfg, self.keys, self.mesh, self.ckpt
    step_fn = training_step_fn(cfg, tx, keys, mesh, state, train_data)
    eval_fn = make_eval_fn(cfg, mesh)
    total, name = cfg.train.num_steps, f"{cfg.method} {self.workdir.name}"
    bar = tqdm.tqdm(
      total=total,
      initial=min(start, total),
      unit="step",
      file=sys.stderr,
      dynamic_ncols=True,
      desc=name,
      disable=not (self.main and cfg.log.progress and sys.stderr.isatty()),
    )
    lines = None  # Where no bar can be drawn: a progress line every log.progress_every_s.
    if self.main and cfg.log.progress_every_s > 0 and not sys.stderr.isatty():
      lines = ProgressLog(name, total, start, cfg.log.progress_every_s)
    history, last_log, last_time, done = [], start, time.time(), start
    results, reached = None, False
    if cfg.train.stop_at_metric and 0 < start < total:  # Resumed: had it stopped early?
      results = evaluate(eval_fn, state.params, val_data, cfg, keys, mesh)
      reached = stop_reached(cfg, results)
    try:
      for step in range(start, total):
        if self.stop or reached:
          break
        state, metrics = step_fn(state, step)
        history.append(metrics)
        bar.update(1)
        done = step + 1
        if lines is not None:
          lines.update(done, lambda: float(metrics["loss"]))
        if done % cfg.log.every == 0 or done == total:
          history = jax.device_get(history)
          bad = first_nonfinite(history, last_log)
          if bad is not None:
            raise _nonfinite(bad, "the loss or gradient norm", ckpt)
          train = mean_metrics(history)
          train["steps_per_sec"] = (done - last_log) / (time.time() - last_time)
          train["elapsed_s"] = time.time() - self.start_time
          self.log(done, "train", train)
          bar.set_postfix(loss=f"{train['loss']:.4f}")
          history, last_log, last_time = [], done, time.time()
        if done % cfg.train.eval_every == 0 or done == total:
          bad = first_nonfinite(jax.device_get(history), last_log)  # Steps not yet logged.
          if bad is not None:
            raise _nonfinite(bad, "the loss or gradient norm", ckpt)
          results = evaluate(eval_fn, state.params, val_data, cfg, keys, mesh)
          if any(not math.isfinite(v) for k, v in results.items() if k.endswith("loss")):
            raise _nonfinite(done, "the evaluation loss", ckpt)
          self.log(done, "eval", results)
          if best is not None:
            best.offer(done, results, state)
          reached = stop_reached(cfg, results)
        if done % cfg.ckpt.every == 0 or done == total or reached:
          self.save(done, state)
    finally:
      bar.close()
      ckpt.wait()
      saved = ckpt.latest_step()
      ckpt.close()
      if best is not None:
        best.close()
    if self.stop:
      raise Interrupted(
        f"{self.stop.name}: stopped at step {done} of {total}; the last complete checkpoint is "
        + ("none (nothing to resume)" if saved is None else f"step {saved}")
        + ". Re-run the same command to "
        + ("start over." if saved is None else "resume from it."),
        self.stop.signum,
      )
    if results is None:  # Already finished: report without logging again.
      results = evaluate(eval_fn, state.params, val_data, cfg, keys, mesh)
    step = done if reached else max(start, total)
    if self.main and cfg.log.plot:
      plot_curves(self.workdir / "metrics.jsonl", self.workdir / "curves.png")
    if cfg.train.final_eval:
      params = parallel.to_host(state.params, mesh)  # Every process takes part in the gather.
      if self.main:
        print(eval_suite.format_table(eval_suite.evaluate(cfg, params, str(self.workdir), step)))
        if best is not None:  # Every process saved it; the main one alone evaluates.
          best_params, best_step = checkpointing.load_params(self.workdir / BEST)
          summary = eval_suite.evaluate(cfg, best_params, str(self.workdir / BEST), best_step)
          print(f"best validation {cfg.ckpt.keep_best} (workdir/{BEST}):")
          print(eval_suite.format_table(summary))
    if self.tb is not None:
      self.tb.write_images(step)
    return {"step": step, **results, "wall_s": time.time() - self.start_time}
