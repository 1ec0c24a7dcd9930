"""train.stop_at_metric / train.stop_at_value: the training loop stops at the first evaluation
whose accuracy reaches the stated value (num_steps is the cap), and a re-run does not go on.
ckpt.keep_best: early stopping without a shorter budget (workdir/best holds the best
validation evaluation's parameters, also across a resume)."""

import json

import jax
import numpy as np
import pytest
from conftest import make_tiny_config, modular_optimal_guesses

from smt_jax.checkpointing import checkpoint_dir, load_params
from smt_jax.data import make_dataset
from smt_jax.errors import ConfigError
from smt_jax.eval.read import rnn_read_stats
from smt_jax.models import build_models
from smt_jax.train import train_and_evaluate
from smt_jax.train.pipeline import stage_row
from smt_jax.train.step import Keys, batch_for_step
from smt_jax.train.validate import validate


def config(**overrides):
  """SMT on retrieval at T = 8: 8 updates at most, evaluated and checkpointed every 2."""
  fields = {
    "train.num_steps": 8,
    "train.batch_size": 4,
    "train.eval_every": 2,
    "train.eval_batch_size": 4,
    "train.eval_batches": 1,
    "log.every": 2,
    "ckpt.every": 4,
    "log.plot": False,
    "train.final_eval": False,
    "optim.warmup_steps": 1,
  }
  return make_tiny_config(**{**fields, **overrides})


def evals(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [r for r in rows if r["split"] == "eval"]


@pytest.mark.integration
@pytest.mark.parametrize(
  "method, metric, lr", [("smt", "teacher_acc", 1e-3), ("bptt", "rnn_acc", 0.05)]
)
def test_stops_at_the_first_evaluation_reaching_the_value(tmp_path, method, metric, lr):
  """(SMT at the default lr; BPTT at 0.05: at the default its accuracy is 0.0 to update 8.)"""
  full = train_and_evaluate(config(method=method, **{"optim.lr": lr}), tmp_path / "full")
  accs = {r["step"]: r[metric] for r in evals(tmp_path / "full")}
  value = accs[4]  # Reached at step 4 at the latest (the same data and updates).
  first = min(step for step, acc in accs.items() if acc >= value)
  stop = {"train.stop_at_metric": metric, "train.stop_at_value": value, "optim.lr": lr}
  cfg = config(method=method, **stop)
  assert value > 0
  stopped = train_and_evaluate(cfg, tmp_path / "stopped")
  assert stopped["step"] == first and full["step"] == 8
  assert [r["step"] for r in evals(tmp_path / "stopped")] == list(range(2, first + 1, 2))
  assert stopped[metric] == pytest.approx(accs[first])
  steps = sorted(
    int(p.name) for p in checkpoint_dir(tmp_path / "stopped").iterdir() if p.name.isdigit()
  )
  assert steps[-1] == first  # Saved where it stopped, off the ckpt.every grid when first = 2.
  again = train_and_evaluate(cfg, tmp_path / "stopped")  # A re-run resumes and stops at once.
  assert again["step"] == first
  # The pipeline's summary row counts the updates taken, not the cap.
  assert stage_row(method, cfg, again, tmp_path / "stopped")["updates"] == first < 8
  assert [r["step"] for r in evals(tmp_path / "stopped")][-1] == first


@pytest.mark.parametrize(
  "overrides, match",
  [
    ({"train.stop_at_metric": "loss"}, "train.stop_at_metric='loss' must be one of"),
    ({"method": "bptt", "train.stop_at_metric": "teacher_acc"}, "teacher_acc only for"),
    ({"train.stop_at_metric": "rnn_acc", "train.stop_at_value": 0.0}, "stop_at_value=0.0"),
    ({"method": "bptt", "train.stop_at_metric": "teacher_acc_sure"}, "teacher_acc only for"),
    (
      {"data.name": "kjv", "train.stop_at_metric": "rnn_acc_sure"},
      "only a synthetic task names, not data.name='kjv': use 'rnn_acc'",
    ),
    ({"ckpt.keep_best": "loss"}, "ckpt.keep_best='loss' must be one of"),
    ({"method": "bptt", "ckpt.keep_best": "teacher_loss"}, "teacher_\\* only for"),
  ],
)
def test_bad_stop_fields_are_named(overrides, match):
  with pytest.raises(ConfigError, match=match):
    validate(config(**overrides))


def keep_best_config(**overrides):
  """BPTT at lr 0.05 (so that the validation loss need not fall at every evaluation), every
  update's parameters kept in checkpoints/ to compare best/ with."""
  fields = {"method": "bptt", "optim.lr": 0.05, "ckpt.every": 2, "ckpt.keep": 10}
  return config(**{**fields, "ckpt.keep_best": "rnn_loss", **overrides})


def best_step(workdir):
  """The evaluation with the lowest rnn_loss in metrics.jsonl (the first one on a tie)."""
  rows = evals(workdir)
  return min(rows, key=lambda r: (r["rnn_loss"], r["step"]))["step"]


@pytest.mark.integration
def test_keep_best_keeps_the_lowest_validation_loss_and_evaluates_it(tmp_path):
  workdir = tmp_path / "run"
  final = train_and_evaluate(keep_best_config(**{"train.final_eval": True}), workdir)
  step = best_step(workdir)
  params, saved = load_params(workdir / "best")
  assert saved == step and final["step"] == 8
  # The same parameters as the run's own checkpoint of that update.
  jax.tree.map(np.testing.assert_array_equal, params, load_params(workdir, step)[0])
  assert sorted(p.name for p in (workdir / "best").iterdir() if p.name.isdigit()) == [str(step)]
  best_eval = json.loads((workdir / "best" / "eval.json").read_text())
  assert best_eval["step"] == step and json.loads((workdir / "eval.json").read_text())["step"] == 8


@pytest.mark.integration
def test_keep_best_after_a_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
  from smt_jax.train import loop

  # At lr 0.02 the validation loss is lowest at update 6 of 8: the crash at 7 leaves best/6
  # beside the checkpoint of update 4, which the resume restores.
  cfg = keep_best_config(**{"optim.lr": 0.02, "ckpt.every": 4, "ckpt.keep": 1})
  train_and_evaluate(cfg, tmp_path / "straight")
  assert best_step(tmp_path / "straight") == 6
  make_step_fn = loop.make_step_fn

  def crash_at_7(*args):  # After the evaluation (and a best save) at 6, past the checkpoint at 4.
    step_fn = make_step_fn(*args)

    def wrapped(state, i):
      if i == 7:
        raise KeyboardInterrupt
      return step_fn(state, i)

    return wrapped

  with monkeypatch.context() as m:
    m.setattr(loop, "make_step_fn", crash_at_7)
    with pytest.raises(KeyboardInterrupt):
      train_and_evaluate(cfg, tmp_path / "resumed")
  assert load_params(tmp_path / "resumed" / "best")[1] == 6
  assert load_params(tmp_path / "resumed")[1] == 4
  train_and_evaluate(cfg, tmp_path / "resumed")
  straight, resumed = (
    load_params(tmp_path / "straight" / "best"),
    load_params(tmp_path / "resumed" / "best"),
  )
  assert resumed[1] == straight[1] == best_step(tmp_path / "straight")
  jax.tree.map(np.testing.assert_array_equal, resumed[0], straight[0])


@pytest.mark.integration
def test_a_study_run_records_the_updates_taken_and_its_cap(tmp_path):
  """A study's result.json counts a stage's updates where train.stop_at_value stopped it (the
  first evaluation, at update 3 of the smoke config's 6), beside its cap."""
  from experiments.repro import reporting, runner

  stop = {"train.stop_at_metric": "teacher_acc", "train.stop_at_value": 1e-6}
  run = runner.Run("r", "smoke.py", {"method": "smt", **stop}, 0, {})
  spec = tmp_path / "run.json"
  spec.write_text(json.dumps({"run": run.to_json(), "workdir": str(tmp_path)}))
  runner.run_worker(str(spec))
  result = json.loads((tmp_path / "result.json").read_text())
  assert [r["step"] for r in evals(tmp_path / "smt")] == [3]
  assert result["stages"]["smt"]["steps"] == 3 and result["stages"]["smt"]["cap"] == 6
  assert (reporting.run_steps(result), reporting.run_cap(result)) == (3, 6)


@pytest.mark.integration
def test_the_evaluation_gives_the_tasks_ceiling_and_its_reads_of_the_sure_answers(tmp_path):
  """On modular arithmetic, where the first answers are guesses, each evaluation's ceiling_acc
  is a Python Bayes rule's accuracy on the validation batches, and rnn_acc_sure is the read of
  the answers that rule is sure of (those the past determines), against the read of the
  validation batches with every other label masked; stop_at_metric may name it."""
  cfg = config(method="bptt", **{"train.num_steps": 2, "train.eval_batch_size": 8})
  cfg.data.update({"name": "modular", "vocab_size": 11, "T": 12})
  cfg.data.kwargs = {"coef_frac": 0.5, "warmup_pairs": 0}
  train_and_evaluate(cfg, tmp_path)
  val, keys = make_dataset(cfg.data, "val"), Keys.from_seed(cfg.seed)
  models, params = build_models(cfg), load_params(tmp_path)[0]
  hits = labels = sure_hits = sure = 0
  for i in range(cfg.train.eval_batches):
    batch = batch_for_step(val, keys.eval_data, i, cfg.train.eval_batch_size, cfg.data.T)
    x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
    best = [modular_optimal_guesses(xs, ys, 11, 0.5) for xs, ys in zip(x.tolist(), y.tolist())]
    hits, labels = hits + sum(sum(b["hit"]) for b in best), labels + (y >= 0).sum()
    mask = np.asarray([b["sure"] for b in best])
    masked = {"x": batch["x"], "y": np.where(mask, y, -1)}
    read = rnn_read_stats(models, params, jax.tree.map(np.asarray, masked), None)
    sure_hits, sure = sure_hits + float(read["hits"].sum()), sure + mask.sum()
  last = evals(tmp_path)[-1]
  assert last["ceiling_acc"] == pytest.approx(hits / labels) and 0 < last["ceiling_acc"] < 1
  assert 0 < sure < labels and last["rnn_acc_sure"] == pytest.approx(sure_hits / sure)
  validate(config(method="bptt", **{"train.stop_at_metric": "rnn_acc_sure"}))


@pytest.mark.integration
def test_on_a_task_whose_answers_follow_from_the_past_the_sure_reads_are_the_reads(tmp_path):
  train_and_evaluate(config(**{"train.num_steps": 2}), tmp_path)  # Retrieval: every answer sure.
  last = evals(tmp_path)[-1]
  assert last["ceiling_acc"] == 1.0
  assert (last["rnn_acc_sure"], last["teacher_acc_sure"]) == (last["rnn_acc"], last["teacher_acc"])


@pytest.mark.integration
def test_conclude_records_a_started_run_at_its_checkpoint_beside_its_cap(tmp_path):
  """runner --conclude ends a run at its newest checkpoint (update 2 of the smoke config's 6):
  the worker trains nothing more, evaluates that checkpoint, and records its updates beside the
  planned cap, marked stopped; a run with no checkpoint of its last stage is refused."""
  from experiments.repro import reporting, runner

  run = runner.Run("r", "smoke.py", {"method": "bptt"}, 0, {})
  with pytest.raises(ConfigError, match="--conclude: r has no checkpoint of its last stage"):
    runner.concluded_config(run, tmp_path)
  cfg = runner.run_config(run)
  cfg.train.num_steps = 2
  train_and_evaluate(cfg, tmp_path / "bptt")
  trained, step = load_params(tmp_path / "bptt")
  spec = tmp_path / "run.json"
  spec.write_text(json.dumps({"run": run.to_json(), "workdir": str(tmp_path), "conclude": True}))
  runner.run_worker(str(spec))
  result = json.loads((tmp_path / "result.json").read_text())
  stage = result["stages"]["bptt"]
  assert (step, stage["steps"], stage["cap"], stage["concluded"]) == (2, 2, 6, True)
  assert reporting.updates_cell(result) == "2 (6, stopped)" and reporting.stopped_short(result)
  after, step_after = load_params(tmp_path / "bptt")
  assert step_after == 2
  jax.tree.map(np.testing.assert_array_equal, after, trained)
