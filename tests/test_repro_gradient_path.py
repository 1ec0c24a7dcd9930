"""Study 10's driver (experiments/repro/gradient_path.py): its runs start DMT from study 1's SMT
teacher with study 1's DMT stage, and its report and verdict follow the numbers."""

import json
import pathlib

import pytest

from experiments.repro import credit, gradient_path, reporting, runner
from smt_jax.objectives import gradient_path_length
from smt_jax.train.pipeline import stage_config


def _fake_teacher(folder: pathlib.Path, steps: list, total: int = 2400) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps({"train": {"num_steps": total}}))
  for s in steps:
    (folder / "checkpoints" / str(s)).mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("T, teacher", [(64, "smt"), (128, "smt128")])
def test_runs_start_from_study_1s_teacher_with_its_dmt_stage(tmp_path, T, teacher):
  folder = tmp_path / "retrieval" / "runs" / f"T{T}_transformer_smt-dmt_s0" / teacher
  _fake_teacher(folder, [2400])
  study = gradient_path.study((T,), str(tmp_path), {"noisy": {"dmt.coef_unif": 0.01}})
  runs = study.runs(False, 0)
  names = [r.name.removeprefix(f"T{T}_") for r in runs]
  short = ["rs4", "rs16"] + (["rs64"] if T > 64 else [])
  assert names == ["k1", "k2", "k4", "k8", "k16", "k32", f"k{T}", *short, "noisy"]
  study1 = runner.run_config(credit.retrieval_run(T, "transformer", "smt,dmt", 0, False, {}))
  reference = stage_config(study1, "dmt", "/study1")
  expected_path = {"k1": 1, "k2": 2, "k4": 4, "k8": 8, "k16": 16, "k32": 32, f"k{T}": T}
  expected_path.update({"rs4": 4, "rs16": 16, "rs64": 64, "noisy": T})
  for run, name in zip(runs, names):
    runner.validate_run(run)
    cfg = runner.run_config(run)
    assert cfg.pipeline.order == ("dmt",) and cfg.model.rnn.updater == "transformer"
    stage = stage_config(cfg, "dmt", "/study10")
    assert stage.ckpt.init_from == str(folder)
    assert stage.train.num_steps == reference.train.num_steps
    assert stage.optim.to_dict() == reference.optim.to_dict()
    assert stage.data.T == T and stage.dmt.k == reference.dmt.k == 1
    assert gradient_path_length(stage, T) == expected_path[name], name
  assert len({r.name for r in runs}) == len(runs)


def test_teacher_finished_needs_its_last_update(tmp_path):
  _fake_teacher(tmp_path, [2300])
  assert not gradient_path.teacher_finished(tmp_path)
  _fake_teacher(tmp_path, [2400])
  assert gradient_path.teacher_finished(tmp_path)
  assert not gradient_path.teacher_finished(tmp_path / "missing")


def test_extra_variants_parse():
  extra = gradient_path.parse_extra(["a:dmt.coef_unif=0.01,dmt.remat=True", "b:dmt.k=2"])
  assert extra == {"a": {"dmt.coef_unif": 0.01, "dmt.remat": True}, "b": {"dmt.k": 2}}
  with pytest.raises(gradient_path.ConfigError, match="--extra"):
    gradient_path.parse_extra(["no_fields"])


def test_report_on_fake_results(tmp_path):
  """The table gives each variant's path, accuracy and cost; the verdict picks the shortest path
  at >= 0.9 (k4's 4 updates here, not rs16's 16 nor the whole rollout)."""
  _fake_teacher(tmp_path / "retrieval" / "runs" / "T64_transformer_smt-dmt_s0" / "smt", [2400])
  runs = gradient_path.study((64,), str(tmp_path), {}).runs(False, 0)
  acc = {"k1": 0.16, "k2": 0.5, "k4": 0.95, "k8": 0.97, "k16": 1.0, "k32": 1.0, "k64": 1.0}
  acc.update({"rs4": 0.3, "rs16": 0.92})
  results = []
  for i, run in enumerate(runs):
    workdir = tmp_path / "out" / run.name
    stage = workdir / "dmt"
    stage.mkdir(parents=True)
    cfg = stage_config(runner.run_config(run), "dmt", workdir)
    (stage / "config.json").write_text(cfg.to_json_best_effort())
    (stage / "step_memory.json").write_text(json.dumps({"peak_bytes": (i + 1) * 2**20}))
    offsets = list(range(-63, 64))
    trace = {k: [0.5] * len(offsets) for k in ("enc_acc", "rnn_acc", "step_acc", "drift")}
    trace.update(offset=offsets, step_err_needle=0.2, step_err_elsewhere=0.01)
    (stage / "needle_trace.json").write_text(json.dumps(trace))
    name = run.tags["variant"]
    role = "rnn from x[0] (m_empty)"
    curve = {"acc": acc[name], "acc_interval": [acc[name] - 0.02, acc[name] + 0.01]}
    read = {"roles": {"rnn": role}, "curves": {role: {**curve, "num_sequences": 1024}}}
    (stage / "eval.json").write_text(json.dumps({"read": read}))
    dmt = {"rnn_acc": acc[name], "drift_settled": 0.1, "steps": 2000, "wall_s": 100.0 + i}
    dmt["rnn_read_from"] = "x[0] (m_empty)"
    results.append({"run": run.to_json(), "stages": {"dmt": dmt}, "workdir": str(workdir)})
  rep = reporting.Report(gradient_path.study((64,), str(tmp_path), {}), tmp_path, False)
  text = gradient_path.report(results, rep)
  assert "T = 64: shortest path reaching ≥ 0.9 from x[0]: 4 updates (k4)" in text
  row = "| 64 | rs16 | x[0] (m_empty) | 16 | 0.920 [0.900, 0.930] | 0.100 | 2000 | 108 | 9.0 |"
  assert row in text
  assert "| 64 | k1 | x[0] (m_empty) | 1 | 0.160 [0.140, 0.170] |" in text
  assert "| 64 | k64 | x[0] (m_empty) | 64 | 1.000 [0.980, 1.010] |" in text
  assert "(the final evaluation: 1024 test sequences" in text
  assert "| 64 | k1 | 0.500 | 0.500 | 0.500 |" in text  # Diagnosis: the needle trace's columns.
  results = [r for r in results if r["run"]["tags"]["variant"] in ("k1", "k2")]
  assert "none of the finished variants" in gradient_path.report(results, rep)
