"""train.stop_at_metric / train.stop_at_value: the training loop stops at the first evaluation
whose accuracy reaches the stated value (num_steps is the cap), and a re-run does not go on."""

import json

import pytest
from conftest import make_tiny_config

from smt_jax.checkpointing import checkpoint_dir
from smt_jax.errors import ConfigError
from smt_jax.train import train_and_evaluate
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
def test_stops_at_the_first_evaluation_reaching_the_value(tmp_path):
  full = train_and_evaluate(config(), tmp_path / "full")
  accs = {r["step"]: r["teacher_acc"] for r in evals(tmp_path / "full")}
  value = accs[4]  # Reached at step 4 at the latest (the same data and updates).
  first = min(step for step, acc in accs.items() if acc >= value)
  cfg = config(**{"train.stop_at_metric": "teacher_acc", "train.stop_at_value": value})
  stopped = train_and_evaluate(cfg, tmp_path / "stopped")
  assert stopped["step"] == first and full["step"] == 8
  assert [r["step"] for r in evals(tmp_path / "stopped")] == list(range(2, first + 1, 2))
  assert stopped["teacher_acc"] == pytest.approx(accs[first])
  steps = sorted(
    int(p.name) for p in checkpoint_dir(tmp_path / "stopped").iterdir() if p.name.isdigit()
  )
  assert steps[-1] == first  # Saved where it stopped, off the ckpt.every grid when first = 2.
  again = train_and_evaluate(cfg, tmp_path / "stopped")  # A re-run resumes and stops at once.
  assert again["step"] == first
  assert [r["step"] for r in evals(tmp_path / "stopped")][-1] == first


@pytest.mark.parametrize(
  "overrides, match",
  [
    ({"train.stop_at_metric": "loss"}, "train.stop_at_metric='loss' must be one of"),
    ({"method": "bptt", "train.stop_at_metric": "teacher_acc"}, "teacher_acc only for"),
    ({"train.stop_at_metric": "rnn_acc", "train.stop_at_value": 0.0}, "stop_at_value=0.0"),
  ],
)
def test_bad_stop_fields_are_named(overrides, match):
  with pytest.raises(ConfigError, match=match):
    validate(config(**overrides))
