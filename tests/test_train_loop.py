"""The training loop: smoke runs of each method, exact resume, SMT -> DMT init, frozen groups,
non-finite losses. Tiny models (T = 8) so that each run compiles and trains in seconds."""

import json
import time

import jax
import numpy as np
import pytest
from conftest import make_tiny_config, random_batch

from smt_jax.errors import ConfigError
from smt_jax.models import init_params
from smt_jax.train import NonFiniteLossError, load_params, loop, train_and_evaluate
from smt_jax.train.metrics import read_metrics


def run_config(tiny_config, method="smt", **overrides):
  """A 4-step run: log, eval and checkpoint every 2 steps; retrieval data at T = 8."""
  fields = {
    "method": method,
    "data.name": "retrieval",
    "train.num_steps": 4,
    "train.batch_size": 4,
    "train.eval_every": 2,
    "train.eval_batch_size": 4,
    "train.eval_batches": 1,
    "log.every": 2,
    "ckpt.every": 2,
    "log.plot": False,
    "train.final_eval": False,
    "optim.warmup_steps": 1,
  }
  fields.update(overrides)
  return tiny_config(**fields)


def without_timing(rows):
  return [{k: v for k, v in r.items() if k not in ("steps_per_sec", "elapsed_s")} for r in rows]


@pytest.fixture(scope="module")
def smt_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("smt")
  train_and_evaluate(run_config(make_tiny_config, **{"log.plot": True}), workdir)
  return workdir


@pytest.mark.integration
def test_smt_run_writes_config_metrics_checkpoints_and_plot(smt_workdir):
  rows = read_metrics(smt_workdir / "metrics.jsonl")
  assert [(r["step"], r["split"]) for r in rows] == [
    (2, "train"),
    (2, "eval"),
    (4, "train"),
    (4, "eval"),
  ]
  assert {"loss", "loss_dec", "loss_dyn", "grad_norm", "lr"} <= rows[0].keys()
  assert {"rnn_acc", "rnn_loss", "teacher_acc", "teacher_loss"} <= rows[1].keys()
  assert json.loads((smt_workdir / "config.json").read_text())["method"] == "smt"
  assert (smt_workdir / "curves.png").stat().st_size > 0
  assert load_params(smt_workdir)[1] == 4


@pytest.mark.integration
def test_dmt_init_from_restores_smt_params_and_keeps_frozen_groups(
  smt_workdir, tmp_path, tiny_config
):
  smt_params, _ = load_params(smt_workdir)
  cfg = run_config(tiny_config, "dmt", **{"ckpt.init_from": str(smt_workdir)})
  init = loop.initial_params(cfg, jax.random.key(123))
  for group in ("encoder", "decoder", "updater"):
    jax.tree.map(np.testing.assert_array_equal, init[group], smt_params[group])
  jax.tree.map(np.testing.assert_array_equal, init["readout"], {"decoder": smt_params["decoder"]})

  final = train_and_evaluate(cfg, tmp_path)
  assert np.isfinite(final["loss"]) and 0.0 <= final["rnn_acc"] <= 1.0
  dmt_params, step = load_params(tmp_path)
  assert step == 4
  for group in ("encoder", "decoder"):  # Frozen by default: bit-identical.
    jax.tree.map(np.testing.assert_array_equal, dmt_params[group], smt_params[group])
  changed = jax.tree.map(
    lambda a, b: not np.array_equal(a, b), dmt_params["updater"], smt_params["updater"]
  )
  assert any(jax.tree.leaves(changed))


@pytest.mark.integration
def test_init_groups_take_the_named_groups_and_start_the_others_fresh(smt_workdir, tiny_config):
  """A deeper updater beside the SMT run's teacher: encoder and decoder from the checkpoint, the
  updater as a fresh init of this config draws it, the readout a copy of the loaded decoder."""
  smt_params, _ = load_params(smt_workdir)
  overrides = {
    "ckpt.init_from": str(smt_workdir),
    "ckpt.init_groups": ("encoder", "decoder"),
    "model.rnn.depth": 2,
  }
  cfg = run_config(tiny_config, "smt", **overrides)
  init = loop.initial_params(cfg, jax.random.key(123))
  fresh = init_params(cfg, jax.random.key(123))
  for group in ("encoder", "decoder"):
    jax.tree.map(np.testing.assert_array_equal, init[group], smt_params[group])
  jax.tree.map(np.testing.assert_array_equal, init["updater"], fresh["updater"])
  jax.tree.map(np.testing.assert_array_equal, init["readout"], {"decoder": smt_params["decoder"]})
  with pytest.raises(ConfigError, match="'updater' parameters do not match"):
    loop.initial_params(
      run_config(tiny_config, "smt", **{**overrides, "ckpt.init_groups": ("updater",)}),
      jax.random.key(0),
    )


@pytest.mark.integration
def test_bptt_smoke_with_gradient_accumulation(tmp_path, tiny_config):
  final = train_and_evaluate(run_config(tiny_config, "bptt", **{"train.grad_accum": 2}), tmp_path)
  assert np.isfinite(final["loss"]) and "teacher_acc" not in final


def wrap_step_fn(monkeypatch, wrapper):
  """Makes the loop's step_fn(state, i) go through wrapper(step_fn, state, i)."""
  make_step_fn = loop.make_step_fn
  monkeypatch.setattr(
    loop,
    "make_step_fn",
    lambda *args: lambda state, i, step_fn=make_step_fn(*args): wrapper(step_fn, state, i),
  )


@pytest.mark.integration
def test_interrupted_then_resumed_run_matches_uninterrupted(tmp_path, tiny_config, monkeypatch):
  cfg = run_config(tiny_config, "bptt")
  train_and_evaluate(cfg, tmp_path / "straight")

  def crash_at_3(step_fn, state, i):
    if i == 3:  # After the checkpoint of update 2 and one more update.
      raise KeyboardInterrupt
    return step_fn(state, i)

  with monkeypatch.context() as m:
    wrap_step_fn(m, crash_at_3)
    with pytest.raises(KeyboardInterrupt):
      train_and_evaluate(cfg, tmp_path / "resumed")
  clock = lambda: {
    r["step"]: r["elapsed_s"]
    for r in read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    if r["split"] == "train"
  }
  kept = {s: e for s, e in clock().items() if s <= load_params(tmp_path / "resumed")[1]}
  t0 = time.time()
  final = train_and_evaluate(cfg, tmp_path / "resumed")
  call = time.time() - t0
  after = clock()
  # The resumed call continues the run's clock from the rows it kept instead of restarting it:
  # wall_s = the kept clock + this call, not this call alone.
  assert kept and all(after[s] == e for s, e in kept.items())
  later = [e for s, e in sorted(after.items()) if s not in kept]
  assert later and min(later) > max(kept.values()) and final["wall_s"] >= max(later)
  assert call < final["wall_s"] <= max(kept.values()) + call

  straight = without_timing(read_metrics(tmp_path / "straight" / "metrics.jsonl"))
  resumed = without_timing(read_metrics(tmp_path / "resumed" / "metrics.jsonl"))
  assert resumed == straight
  jax.tree.map(
    np.testing.assert_array_equal,
    load_params(tmp_path / "resumed")[0],
    load_params(tmp_path / "straight")[0],
  )


@pytest.mark.integration
def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(
  tmp_path, tiny_config, monkeypatch
):
  def poison_update_3(step_fn, state, i):
    if i == 2:
      state = state.replace(params=jax.tree.map(lambda a: a * np.nan, state.params))
    return step_fn(state, i)

  wrap_step_fn(monkeypatch, poison_update_3)
  with pytest.raises(NonFiniteLossError, match=r"step 3: the loss or gradient norm is NaN/Inf"):
    train_and_evaluate(run_config(tiny_config, "bptt"), tmp_path)
  params, step = load_params(tmp_path)
  assert step == 2
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


@pytest.mark.integration
def test_per_stage_optim_fields_reach_the_optimizer(tiny_config, tmp_path):
  """pipeline.stages.dmt.optim.* overrides the shared optim group for that stage only: Adam's
  first update moves every parameter with a gradient by exactly lr (m_hat / sqrt(v_hat) =
  sign(g)), with no warmup and no weight decay. From m_empty DMT trains the updater alone."""
  import ml_collections

  from smt_jax.models import init_params
  from smt_jax.train.optimizer import make_optimizer
  from smt_jax.train.pipeline import stage_config
  from smt_jax.train.step import TrainState, make_train_step

  cfg = run_config(
    tiny_config,
    **{
      "optim.lr": 1e-3,
      "optim.schedule": "warmup_constant",
      "optim.warmup_steps": 0,
      "optim.weight_decay": 0.0,
      "optim.eps": 1e-12,
      "pipeline.order": ("smt", "dmt"),
    },
  )
  cfg.pipeline.stages = ml_collections.ConfigDict(
    {
      "smt": {"method": "smt"},
      "dmt": {"method": "dmt", "optim": {"lr": 0.05}, "dmt": {"start": -1, "Td": 0}},
    }
  )
  for stage, lr, trained in (
    ("smt", 1e-3, {"encoder", "decoder", "updater"}),
    ("dmt", 0.05, {"updater"}),
  ):
    run = stage_config(cfg, stage, tmp_path)
    assert run.optim.lr == lr
    tx = make_optimizer(run)
    params = init_params(run, jax.random.key(0))
    state = TrainState(jax.numpy.zeros((), jax.numpy.int32), params, tx.init(params))
    batch = random_batch(jax.random.key(1), 4, run.data.T, run.data.vocab_size, label_every=1)
    new, metrics = jax.jit(make_train_step(run, tx))(state, batch, jax.random.key(2))
    assert float(metrics["lr"]) == pytest.approx(lr)
    for group in params:
      moved = np.concatenate(
        [
          np.abs(np.ravel(a - b))
          for a, b in zip(jax.tree.leaves(new.params[group]), jax.tree.leaves(params[group]))
        ]
      )
      if group in trained:
        assert moved.max() == pytest.approx(lr, rel=1e-3), (stage, group)
        assert moved.max() <= lr * (1 + 1e-3)
      else:
        assert moved.max() == 0.0, (stage, group)
