"""Honest evaluation sets: disjoint train / validation / test streams, Wilson intervals, the
pipeline's table with intervals and experiments/remeasure.py on a tiny trained run."""

import json
import math

import numpy as np
import pytest
from conftest import make_tiny_config

from experiments import remeasure
from smt_jax import export
from smt_jax.checkpointing import load_params
from smt_jax.data import make_dataset
from smt_jax.eval import load_run_config
from smt_jax.eval.config import final_eval_batches
from smt_jax.eval.measures import format_acc, mean_interval, wilson_interval
from smt_jax.models import build_models
from smt_jax.train import loop, pipeline, train_and_evaluate
from smt_jax.train.step import Keys, batch_for_step

Z = 1.959963984540054


@pytest.mark.parametrize(
  "hits,n,expected",
  [
    # k = n / 2: centre 1/2, half-width z / (2 sqrt(n + z^2)).
    (512, 1024, (0.5 - Z / (2 * math.sqrt(1024 + Z * Z)), 0.5 + Z / (2 * math.sqrt(1024 + Z * Z)))),
    # k = 0: [0, z^2 / (n + z^2)];  k = n: [n / (n + z^2), 1].
    (0, 1024, (0.0, Z * Z / (1024 + Z * Z))),
    (1024, 1024, (1024 / (1024 + Z * Z), 1.0)),
    # By hand, p = 0.9, n = 100: centre (0.9 + 0.0192073) / 1.0384146 = 0.8852026, half-width
    # 1.9599640 / 1.0384146 * sqrt(0.0009 + 0.0000960) = 0.0595683.
    (90, 100, (0.8256343, 0.9447709)),
  ],
)
def test_wilson_interval_matches_the_closed_forms(hits, n, expected):
  lo, hi = wilson_interval(hits, n)
  assert lo == pytest.approx(expected[0], abs=1e-6) and hi == pytest.approx(expected[1], abs=1e-6)


def test_wilson_interval_of_nothing_is_nan_and_formats_without_brackets():
  assert all(math.isnan(v) for v in wilson_interval(0, 0))
  assert format_acc(0.5, wilson_interval(0, 0)) == "0.500"
  assert format_acc(0.5, (0.46943, 0.53057)) == "0.500 [0.469, 0.531]"
  assert format_acc(None) == "-"


def test_mean_interval_by_hand():
  # [1, 2, 3, 4]: mean 2.5, sd sqrt(5 / 3) = 1.2909944, half-width 1.9599640 * 1.2909944 / 2.
  mean, (lo, hi) = mean_interval([1.0, 2.0, 3.0, 4.0])
  assert mean == 2.5
  assert lo == pytest.approx(1.2348494, abs=1e-6) and hi == pytest.approx(3.7651506, abs=1e-6)
  assert mean_interval([3.0])[0] == 3.0 and all(math.isnan(v) for v in mean_interval([3.0])[1])


@pytest.mark.integration
def test_train_validation_and_test_streams_are_disjoint_and_deterministic(tiny_config):
  """The sequences each stream draws as the trainer, its validation and the final evaluation
  draw them; a vocabulary of 1000 makes two random sequences coincide only if their keys do."""
  cfg = tiny_config(**{"data.name": "retrieval", "data.vocab_size": 1000, "data.T": 12})
  assert cfg.seed == cfg.eval.seed  # Even with one seed for both roots.
  keys, T = Keys.from_seed(cfg.seed), cfg.data.T
  train_ds, val_ds, test_ds = (make_dataset(cfg.data, s) for s in ("train", "val", "test"))

  def streams():
    return {
      "train": [batch_for_step(train_ds, keys.data, s, 16, T)["x"] for s in range(8)],
      "val": [batch_for_step(val_ds, keys.eval_data, i, 16, T)["x"] for i in range(8)],
      "test": list(final_eval_batches(test_ds, cfg.eval.seed, "read", T, 8, 16)),
    }

  first, again = streams(), streams()
  first["test"] = [b["x"] for b in first["test"]]
  again["test"] = [b["x"] for b in again["test"]]
  rows = {}
  for name in first:
    np.testing.assert_array_equal(np.stack(first[name]), np.stack(again[name]))
    rows[name] = {tuple(r) for r in np.concatenate(first[name]).tolist()}
    assert len(rows[name]) == 128  # Distinct within a stream too: the check can see overlap.
  assert not rows["train"] & rows["val"]
  assert not rows["train"] & rows["test"]
  assert not rows["val"] & rows["test"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny SMT run with its final evaluation (read only, 2 x 4 test sequences), recording the
  splits the training loop asks for."""
  workdir = tmp_path_factory.mktemp("evalsets") / "smt"
  cfg = make_tiny_config(
    **{
      "method": "smt",
      "data.name": "retrieval",
      "train.num_steps": 2,
      "train.batch_size": 4,
      "train.eval_every": 2,
      "train.eval_batch_size": 4,
      "train.eval_batches": 1,
      "log.every": 2,
      "ckpt.every": 2,
      "log.plot": False,
      "optim.warmup_steps": 1,
      "eval.sections": ("read",),
      "eval.batch_size": 4,
      "eval.num_batches": 2,
    }
  )
  splits = []
  real = loop.make_dataset

  def recording(data_cfg, split="train"):
    splits.append(split)
    return real(data_cfg, split)

  loop.make_dataset = recording
  try:
    final = train_and_evaluate(cfg, workdir)
  finally:
    loop.make_dataset = real
  return cfg, workdir, final, splits


@pytest.mark.integration
def test_training_validates_on_val_and_the_final_read_has_intervals(trained):
  cfg, workdir, _, splits = trained
  assert sorted(set(splits)) == ["train", "val"]
  read = json.loads((workdir / "eval.json").read_text())["read"]
  for curve in read["curves"].values():
    assert curve["num_sequences"] == 8 and curve["num_labels"] == 8  # Retrieval: 1 per sequence.
    hits = round(curve["acc"] * curve["num_labels"])
    assert curve["acc_interval"] == pytest.approx(list(wilson_interval(hits, 8)))
  assert set(read["roles"]) == {"rnn", "rnn_enc", "teacher"}


@pytest.mark.integration
def test_pipeline_row_reports_the_test_split_with_intervals(trained):
  cfg, workdir, final, _ = trained
  row = pipeline.stage_row("smt", cfg, final, workdir)
  read = json.loads((workdir / "eval.json").read_text())["read"]
  rnn = read["curves"][read["roles"]["rnn"]]
  assert row["split"] == "test" and row["num_sequences"] == 8
  assert row["rnn_acc"] == rnn["acc"] and row["rnn_acc_interval"] == rnn["acc_interval"]
  lo, hi = rnn["acc_interval"]
  assert f"{rnn['acc']:.3f} [{lo:.3f}, {hi:.3f}]" in pipeline.format_table([row])
  cfg_off = cfg.copy_and_resolve_references()
  cfg_off.train.final_eval = False  # No final evaluation: the validation numbers, labelled so.
  fallback = pipeline.stage_row("smt", cfg_off, final, workdir)
  assert fallback["split"] == "val" and fallback["rnn_acc"] == final["rnn_acc"]
  assert fallback["num_sequences"] == 4 and "rnn_acc_interval" not in fallback


@pytest.mark.integration
def test_remeasure_reproduces_the_final_read_and_draws_fresh_sequences(trained, capsys):
  _, workdir, _, _ = trained
  read = json.loads((workdir / "eval.json").read_text())["read"]
  rnn = read["curves"][read["roles"]["rnn"]]
  argv = ["remeasure.py", f"--workdir={workdir}", "--num_sequences=8", "--batch_size=4"]
  assert remeasure.main(argv) == 0
  line = capsys.readouterr().out.strip()
  assert len(line.splitlines()) == 1 and "8 test sequences" in line
  out = json.loads((workdir / "remeasure.json").read_text())
  assert out["acc"] == pytest.approx(rnn["acc"]) and out["loss"] == pytest.approx(rnn["loss"])
  assert out["acc_interval"] == pytest.approx(rnn["acc_interval"])
  assert remeasure.main(argv + ["--seed=7", f"--out={workdir / 'fresh.json'}"]) == 0
  fresh = json.loads((workdir / "fresh.json").read_text())
  assert fresh["seed"] == 7 and fresh["loss"] != pytest.approx(rnn["loss"])


@pytest.mark.integration
def test_remeasure_of_the_exported_rnn_equals_that_of_its_workdir(trained, tmp_path, capsys):
  """The RNN alone (smt_jax.export, as docs/results/rnns keeps the headline RNNs) reads the same
  test sequences to the same accuracy and loss as its run's checkpoint."""
  _, workdir, _, _ = trained
  rnn = tmp_path / "rnn.npz"
  assert export.main([str(workdir), f"--out={rnn}"]) == 0
  argv = ["remeasure.py", "--num_sequences=8", "--batch_size=4", "--seed=5"]
  assert remeasure.main(argv + [f"--workdir={workdir}", f"--out={tmp_path / 'a.json'}"]) == 0
  assert remeasure.main(argv + [f"--rnn={rnn}", f"--out={tmp_path / 'b.json'}"]) == 0
  a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
  assert a["num_labels"] == b["num_labels"] > 0 and a["acc"] == b["acc"]
  assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
  capsys.readouterr()
  assert remeasure.main(argv + [f"--rnn={tmp_path / 'none.npz'}"]) == 1
  assert "not found" in capsys.readouterr().err
  assert remeasure.main(argv + [f"--rnn={rnn}", f"--workdir={workdir}"]) == 1
  assert "exactly one of" in capsys.readouterr().err


@pytest.mark.integration
def test_an_exported_bptt_finetune_from_m_empty_is_read_and_named_from_m_empty(trained, tmp_path):
  """A BPTT stage from m_empty (the "finetune" stage) exported alone: the file's config keeps
  the method, not bptt.start, yet remeasure names the read as it runs, from the file's m_start
  (m_empty); BPTT from its initial memory stays named so. The tiny SMT run's parameters stand in
  for the fine-tuned ones."""
  _, workdir, _, _ = trained
  params, step = load_params(workdir)
  argv = ["remeasure.py", "--num_sequences=8", "--batch_size=4", "--seed=5"]
  for start, named in (("empty", "x[0] (m_empty)"), ("init", "x[0] (init)")):
    cfg = load_run_config(str(workdir))
    cfg.method, cfg.bptt.start = "bptt", start
    rnn = tmp_path / f"bptt_{start}.npz"
    np.savez(rnn, **export.rnn_artefact(cfg, params, step))
    models = build_models(cfg)
    starts = {"empty": models.empty_memory, "init": models.initial_memory}
    starts = {name: first(params, 1)[0] for name, first in starts.items()}
    assert not np.allclose(starts["empty"], starts["init"], atol=1e-3)  # Two different reads.
    np.testing.assert_allclose(export.load(rnn).m_start, starts[start], atol=1e-6)  # jit vs not.
    out = tmp_path / f"{start}.json"
    assert remeasure.main(argv + [f"--rnn={rnn}", f"--out={out}"]) == 0
    read = json.loads(out.read_text())
    assert (read["method"], read["read_from"]) == ("bptt", named)


def test_remeasure_refuses_a_folder_without_a_run_and_a_pipeline_folder(tmp_path, capsys):
  assert remeasure.main(["remeasure.py", f"--workdir={tmp_path}"]) == 1
  assert "has no config.json" in capsys.readouterr().err
  (tmp_path / "config.json").write_text(json.dumps({"pipeline": {"order": ["smt", "dmt"]}}))
  assert remeasure.main(["remeasure.py", f"--workdir={tmp_path}"]) == 1
  assert f"name one stage: {tmp_path / 'smt'}, {tmp_path / 'dmt'}" in capsys.readouterr().err
