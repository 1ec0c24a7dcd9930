"""Study 10's driver (experiments/repro/gradient_path.py): its runs start DMT from study 1's SMT
teacher with study 1's DMT stage, and its report and verdict follow the numbers."""

import json
import pathlib

import pytest

from experiments.repro import credit, gradient_path, reporting, runner, tasks
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
  extra = {"noisy": {"dmt.coef_unif": 0.01}}
  study = gradient_path.study((("retrieval", T),), str(tmp_path), extra)
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


def test_task_runs_start_from_study_9s_teacher_with_its_dmt_stage(tmp_path):
  """--task copy:32 adds study 9's reversed copy at T = 32: DMT from that study's SMT stage, with
  its DMT stage; the task's name prefixes the runs (retrieval's keep their names)."""
  cells = gradient_path.parse_cells("64", ["copy:32"], quick=False)
  assert cells == (("retrieval", 64), ("copy", 32))
  folder = tmp_path / "tasks" / "runs" / "copy_T32_transformer_smt-dmt" / "smt"
  assert gradient_path.teacher_of("copy", 32, False, str(tmp_path))[1] == folder
  runs = [r for r in gradient_path.make_runs(cells, False, str(tmp_path), {}) if r.tags["T"] == 32]
  assert [r.name for r in runs] == [f"copy_T32_{v}" for v in gradient_path.variants(32, {})]
  study9 = runner.run_config(tasks.task_run("copy", 32, "transformer", "smt,dmt", False))
  reference = stage_config(study9, "dmt", "/study9")
  for run in runs:
    assert run.tags == {"task": "copy", "T": 32, "variant": run.name.removeprefix("copy_T32_")}
    stage = stage_config(runner.run_config(run), "dmt", "/study10")
    assert stage.ckpt.init_from == str(folder) and stage.data.name == "copy"
    assert stage.data.kwargs.to_dict() == reference.data.kwargs.to_dict()
    assert stage.optim.to_dict() == reference.optim.to_dict()
    assert stage.train.num_steps == reference.train.num_steps
  for bad in (["nope:32"], ["copy"], ["copy:"]):
    with pytest.raises(gradient_path.ConfigError, match="--task"):
      gradient_path.parse_cells("", bad, quick=False)


def test_teacher_finished_needs_its_last_update_or_a_finished_run(tmp_path):
  teacher = tmp_path / "run" / "smt"
  _fake_teacher(teacher, [2300])
  assert not gradient_path.teacher_finished(teacher)
  (tmp_path / "run" / "result.json").write_text("{}")  # Stopped at its target accuracy.
  assert gradient_path.teacher_finished(teacher)
  _fake_teacher(tmp_path, [2400])
  assert gradient_path.teacher_finished(tmp_path)
  assert not gradient_path.teacher_finished(tmp_path / "missing")


def test_extra_variants_parse():
  extra = gradient_path.parse_extra(["a:dmt.coef_unif=0.01,dmt.remat=True", "b:dmt.k=2"])
  assert extra == {"a": {"dmt.coef_unif": 0.01, "dmt.remat": True}, "b": {"dmt.k": 2}}
  with pytest.raises(gradient_path.ConfigError, match="--extra"):
    gradient_path.parse_extra(["no_fields"])


def _fake_result(folder: pathlib.Path, run, acc: float, teacher_acc: float, i: int) -> dict:
  """A finished DMT run of study 10 in folder/NAME: its eval.json read, step memory, needle or
  answer trace and result, with the given accuracies."""
  workdir = folder / run.name
  stage = workdir / "dmt"
  stage.mkdir(parents=True)
  cfg = stage_config(runner.run_config(run), "dmt", workdir)
  (stage / "config.json").write_text(cfg.to_json_best_effort())
  (stage / "step_memory.json").write_text(json.dumps({"peak_bytes": (i + 1) * 2**20}))
  T = run.tags["T"]
  offsets = list(range(-(T - 1), T))
  trace = {k: [0.5] * len(offsets) for k in ("enc_acc", "rnn_acc", "step_acc", "drift")}
  trace.update(offset=offsets, step_err_needle=0.2, step_err_elsewhere=0.01)
  (stage / "needle_trace.json").write_text(json.dumps(trace))
  answers = {"t": list(range(T)), "enc_acc": [0.7] * T, "rnn_acc": [None] + [0.6] * (T - 1)}
  (stage / "trace.json").write_text(json.dumps({**answers, "drift": [0.25] * T}))
  role = "rnn from x[0] (m_empty)"
  curve = {"acc": acc, "acc_interval": [acc - 0.02, acc + 0.01], "num_sequences": 1024}
  (stage / "eval.json").write_text(
    json.dumps({"read": {"roles": {"rnn": role}, "curves": {role: curve}}})
  )
  dmt = {"rnn_acc": acc, "teacher_acc": teacher_acc, "drift_settled": 0.1, "steps": 2000}
  dmt.update(wall_s=100.0 + i, rnn_read_from="x[0] (m_empty)")
  return {"run": run.to_json(), "stages": {"dmt": dmt}, "workdir": str(workdir)}


def test_report_on_fake_results(tmp_path):
  """The table gives each variant's path, accuracy and cost; the verdict picks the shortest path
  at >= 0.9 on retrieval (k4's 4 updates here, not rs16's 16 nor the whole rollout), and at >= 0.9
  of the teacher's accuracy on a study 9 task (k2 on copy: 0.55 of a 0.6 teacher)."""
  cells = (("retrieval", 64), ("copy", 32))
  for task, T in cells:
    _fake_teacher(pathlib.Path(gradient_path.teacher_of(task, T, False, str(tmp_path))[1]), [2400])
  study = gradient_path.study(cells, str(tmp_path), {})
  acc = {"k1": 0.16, "k2": 0.5, "k4": 0.95, "k8": 0.97, "k16": 1.0, "k32": 1.0, "k64": 1.0}
  acc.update({"rs4": 0.3, "rs16": 0.92})
  copy_acc = {"k1": 0.5, "k2": 0.55, "k4": 0.59, "k8": 0.6, "k16": 0.6, "k32": 0.6}
  copy_acc.update({"rs4": 0.2, "rs16": 0.58})
  results = []
  for i, run in enumerate(study.runs(False, 0)):
    name, task = run.tags["variant"], run.tags["task"]
    if task == "retrieval":
      results.append(_fake_result(tmp_path / "out", run, acc[name], 0.99, i))
    else:
      results.append(_fake_result(tmp_path / "out", run, copy_acc[name], 0.6, i))
  rep = reporting.Report(study, tmp_path, False)
  text = gradient_path.report(results, rep)
  assert "retrieval, T = 64: shortest path reaching ≥ 0.9 from x[0]: 4 updates (k4)" in text
  goal = "≥ 0.9 of the teacher's accuracy from x[0]"
  assert f"copy, T = 32: shortest path reaching {goal}: 2 updates (k2)" in text
  row = "| retrieval | 64 | rs16 | x[0] (m_empty) | 16 | 0.920 [0.900, 0.930] | 0.990 | 0.100 |"
  assert row + " 2000 | 108 | 9.0 |" in text
  assert "| retrieval | 64 | k1 | x[0] (m_empty) | 1 | 0.160 [0.140, 0.170] |" in text
  assert "| retrieval | 64 | k64 | x[0] (m_empty) | 64 | 1.000 [0.980, 1.010] |" in text
  assert "| copy | 32 | k2 | x[0] (m_empty) | 2 | 0.550 [0.530, 0.560] | 0.600 |" in text
  assert "(the final evaluation: 1024 test sequences" in text
  assert "| 64 | k1 | 0.500 | 0.500 | 0.500 |" in text  # Diagnosis: the needle trace's columns.
  # The answer trace's: the means over t >= T/2 (0.7, 0.6) and the drift at T/2 and T - 1.
  assert "| copy | 32 | k1 | 0.700 | 0.600 | 0.250 | 0.250 |" in text
  results = [r for r in results if r["run"]["tags"]["variant"] in ("k1", "k2")]
  text = gradient_path.report(results, rep)
  assert "retrieval, T = 64: shortest path reaching ≥ 0.9 from x[0]: none of the finished" in text
  assert f"copy, T = 32: shortest path reaching {goal}: 2 updates (k2)" in text
