"""Study 9's driver (experiments/repro/tasks.py): its run list and its report on fake results."""

import json

import pytest

from experiments.configs import tasks as task_configs
from experiments.repro import reporting, runner, tasks
from smt_jax.eval.measures import lag_edges
from smt_jax.train.pipeline import stage_config

pytestmark = pytest.mark.integration  # Study tests: the second tier.


def test_run_list_covers_every_task_T_and_method():
  runs = tasks.runs(quick=False, seeds=0)
  assert len(runs) == 5 * 4 * 5 and len({r.name for r in runs}) == len(runs)
  cells = {(r.tags["task"], r.tags["T"], r.tags["updater"], r.tags["method"]) for r in runs}
  for variant in ("copy", "keys_values", "keys_values_disjoint", "modular", "stack"):
    for T in (32, 64, 128, 256):
      for updater in ("transformer", "mlp"):
        assert (variant, T, updater, "SMT→DMT") in cells and (variant, T, updater, "BPTT") in cells
      assert (variant, T, "gru", "BPTT") in cells
  for run in runs:
    cfg = runner.run_config(run)
    assert cfg.model.rnn.updater == run.tags["updater"] and not cfg.train.final_eval
    stages = cfg.pipeline.stages
    if run.tags["method"] == "BPTT":
      assert list(cfg.pipeline.order) == ["bptt"]
      budget = stages.smt.train.num_steps + stages.dmt.train.num_steps  # The teacher's cap.
      factor = tasks.bptt_factor(run.tags["updater"], run.tags["T"])
      assert stages.bptt.train.num_steps == factor * budget
      # ... and stops at a perfect validation read from x[0].
      assert (stages.bptt.train.stop_at_metric, stages.bptt.train.stop_at_value) == (
        "rnn_acc_sure",
        1.0,
      )
    else:
      assert list(cfg.pipeline.order) == ["smt", "dmt"]
      assert stages.smt.train.stop_at_metric == "teacher_acc"


def test_bptt_gets_smt_dmts_idle_wall_clock_where_the_rates_are_measured():
  """At every T whose stages experiments/bench/rates.py has measured (T = 64 and 128), BPTT of
  each updater trains at least as long as SMT -> DMT of that updater with the teacher's cap, and
  the GRU at least as long as the slower SMT -> DMT, on every task, at the idle rates."""
  rates = reporting.load_rates()
  idle = {}
  for run in tasks.runs(quick=False, seeds=0):
    tags = run.tags
    idle[tags["task"], tags["T"], tags["updater"], tags["method"]] = runner.planned_idle_wall(
      run, rates
    )
  measured = {(task, T) for (task, T, _, _), v in idle.items() if v is not None}
  assert {T for _, T in measured} >= {64, 128}
  for task, T in measured:
    smt_dmt = {u: idle[task, T, u, tasks.SMT_DMT] for u in tasks.UPDATERS}
    for updater in (*tasks.UPDATERS, tasks.REFERENCE):
      own = smt_dmt.get(updater, max(smt_dmt.values()))
      assert idle[task, T, updater, tasks.BPTT] >= own, (task, T, updater)
  at = [{"run": {"tags": {"T": T}}} for T in (64, 32, 64)]
  assert tasks.factors_text(at) == "8 (T = 32); transformer 9, mlp 13, gru 9 (T = 64)"


def test_configs_set_each_variants_task_at_T():
  for T in (32, 256):
    c = runner.load_config(f"tasks.py:task=stack,T={T}")
    assert (c.data.name, c.data.T, c.data.kwargs.depth) == ("stack", T, T // 4)
    c = runner.load_config(f"tasks.py:task=keys_values_disjoint,T={T}")
    assert c.data.kwargs.disjoint and c.data.kwargs.n_pairs == 0
  c = runner.load_config("tasks.py:task=modular,T=64")
  assert int(c.data.kwargs.coef_frac * c.data.vocab_size) == 3  # w, b < 0.2 * 17.
  assert runner.load_config("tasks.py:task=copy").data.kwargs.reverse
  # The memory: 8 tokens of d = 32, and for copy 16 floats per symbol of its T / 2 symbols.
  for task, T, k in (("stack", 256, 8), ("copy", 32, 8), ("copy", 64, 16), ("copy", 256, 64)):
    c = runner.load_config(f"tasks.py:task={task},T={T}")
    assert (c.model.d_model, c.model.mem_tokens) == (32, k)
  # SMT decodes 16 of the 65 memories at T = 64, every memory at T = 32, sampled ones beyond.
  for T, n_t, n_dec in ((32, 0, 0), (64, 0, 16), (128, 32, 0)):
    c = runner.load_config(f"tasks.py:task=modular,T={T}")
    assert (c.smt.n_t, c.smt.n_dec) == (n_t, n_dec)
  with pytest.raises(Exception, match="task='nope' is unknown"):
    runner.load_config("tasks.py:task=nope")


def test_quick_runs_validate():
  for run in tasks.runs(quick=True, seeds=0)[:5]:  # One task: every method at T = 16.
    runner.validate_run(run)


def fake(tmp_path, task, T, updater, method, acc, teacher=None, teacher_steps=None):
  name = f"{task}_T{T}_{updater}_{method}"
  workdir = tmp_path / name
  stages = {}
  if method == "SMT→DMT":
    (workdir / "dmt").mkdir(parents=True)
    trace = {"t": list(range(4)), "enc_acc": [None, 1.0, 0.9, 0.7], "rnn_acc": [0.1, 0.2, 0.5, 0.3]}
    (workdir / "dmt" / "trace.json").write_text(json.dumps({**trace, "drift": [0, 1, 2, 3]}))
    smt = {"method": "smt", "teacher_acc": teacher, "wall_s": 10.0}
    stages["smt"] = {**smt, "steps": teacher_steps, "cap": 400}  # It stopped at the target.
    stages["dmt"] = {"method": "dmt", "rnn_acc": acc, "wall_s": 10.0, "steps": 200, "cap": 200}
  else:
    stages["bptt"] = {"method": "bptt", "rnn_acc": acc, "wall_s": 30.0, "steps": 4800}
  # The test read of the last stage: the report's accuracies (the validation ones above are 0.5
  # so that reading them instead would show).
  curves = {"rnn from x[0]": {"acc": acc, "acc_interval": [acc - 0.02, acc + 0.01]}}
  roles = {"rnn": "rnn from x[0]"}
  if teacher is not None:
    curves["teacher"] = {"acc": teacher, "acc_interval": [teacher - 0.01, teacher + 0.01]}
    roles["teacher"] = "teacher"
  # Accuracy by lag: the run's accuracy in every bucket but the last, half of it there.
  edges = lag_edges(T)
  by_lag = lambda a: None if a is None else [a] * (len(edges) - 2) + [a / 2]
  lags = {"edges": edges, "count": [1] * (len(edges) - 1), "rnn_acc": by_lag(acc)}
  last = workdir / list(stages)[-1]
  last.mkdir(parents=True, exist_ok=True)
  read = {"curves": curves, "roles": roles}
  step = list(stages.values())[-1]["steps"]  # The evaluation read the stage's last checkpoint.
  (last / "eval.json").write_text(
    json.dumps({"step": step, "read": read, "lags": {**lags, "teacher_acc": by_lag(teacher)}})
  )
  for stage in stages.values():
    stage.update({k: 0.5 for k in ("rnn_acc", "teacher_acc") if k in stage})
  # Each stage's config as the pipeline saves it: the gradient path is read from it.
  order = "smt,dmt" if method == "SMT→DMT" else "bptt"
  cfg = runner.run_config(tasks.task_run(task, T, updater, order, quick=False))
  for stage in stages:
    (workdir / stage).mkdir(parents=True, exist_ok=True)
    (workdir / stage / "config.json").write_text(stage_config(cfg, stage, workdir).to_json())
  tags = {"task": task, "T": T, "updater": updater, "method": method}
  return {"run": {"name": name, "tags": tags, "seed": 0}, "stages": stages, "workdir": str(workdir)}


def test_report_on_fake_results(tmp_path, monkeypatch):
  # Idle rates (updates/s) of one run's stages; the other runs' are not measured.
  rates = {"copy_T128_transformer_SMT→DMT/smt": 10.0, "copy_T128_transformer_SMT→DMT/dmt": 4.0}
  monkeypatch.setattr(reporting, "load_rates", lambda: rates)
  results = []
  # copy: SMT→DMT of both updaters at 0.9 of a 0.98 teacher and above BPTT at 128 and 256; at 256
  # the MLP's falls below 0.9 of its teacher. BPTT of the transformer is within 0.1 of chance
  # (1/6) from T = 128 on, the MLP's never.
  for T, smt, mlp_smt, bptt in ((128, 0.9, 0.9, 0.2), (256, 0.89, 0.8, 0.15)):
    results += [
      fake(tmp_path, "copy", T, "transformer", "SMT→DMT", smt, 0.98, 300),
      fake(tmp_path, "copy", T, "mlp", "SMT→DMT", mlp_smt, 0.98, 400),
      fake(tmp_path, "copy", T, "transformer", "BPTT", bptt),
      fake(tmp_path, "copy", T, "mlp", "BPTT", 0.5),
      fake(tmp_path, "copy", T, "gru", "BPTT", 1.0),
    ]
  # stack at 128: BPTT of the MLP ahead, so the claim fails there.
  results += [
    fake(tmp_path, "stack", 128, "transformer", "SMT→DMT", 0.9, 0.95, 200),
    fake(tmp_path, "stack", 128, "mlp", "SMT→DMT", 0.6, 0.95, 200),
    fake(tmp_path, "stack", 128, "transformer", "BPTT", 0.5),
    fake(tmp_path, "stack", 128, "mlp", "BPTT", 0.7),
  ]
  rep = reporting.Report(tasks.STUDY, tmp_path, quick=False)
  text = tasks.report(results, rep)
  assert rep.plots == ["tasks_copy.png", "tasks_stack.png"]
  assert all((tmp_path / f).is_file() for f in rep.plots)
  # 0.89 >= 0.9 * 0.98 = 0.882 and above BPTT (0.15): the transformer holds at 256.
  assert "transformer: SMT→DMT ≥ 0.9 of its teacher and above BPTT up to T = 256" in text
  assert "BPTT within 0.1 of chance from T = 128" in text
  assert "mlp: SMT→DMT ≥ 0.9 of its teacher and above BPTT up to T = 128" in text
  assert "BPTT within 0.1 of chance from T = none (measured at T = 128, 256)" in text
  # The stack's MLP pair at 128 is decided (BPTT ahead), so its target names the T it failed at.
  assert "up to T = none (decided at T = 128)" in text
  assert "BPTT of the GRU: [1.00, 1.00]" in text
  assert "copy: holds; keys_values: not measured" in text and "stack: fails" in text
  assert "It holds on 1 of these 4 tasks" in text and "not met here." in text
  row = "| transformer | SMT→DMT | 128 | — | 0.900 [0.880, 0.910] | 0.980 [0.970, 0.990] | 300 |"
  # Updates taken (cap); SMT's gradient crosses one update, DMT's and BPTT's all T.
  # Idle s: 300 SMT updates at 10/s and 200 DMT updates at 4/s; '—' where rates are unmeasured.
  assert row + " 500 (600) | 20 | 80 | SMT 1; DMT 128 |" in text
  row = "| gru | BPTT | 256 | — | 1.000 [0.980, 1.010] | — | — | 4800 (4800) | 30 | — | 256 |"
  assert row in text
  # The answer trace's means over t >= T/2 of the fake trace (t = 2, 3).
  assert "| mlp | 128 | 0.800 | 0.400 | 2.000 | 3.000 |" in text
  assert task_configs.TEACHER_TARGET == 0.95 and "0.95 or its cap" in text
  # Copy's answers follow from the past: its ceiling is 1 at every T.
  assert "Chance 0.167; ceiling 1.000 (T = 128), 1.000 (T = 256) (the accuracy" in text
  # Accuracy by lag (copy and stack): buckets to T = 256's; T = 128's rows end with "—".
  assert lag_edges(128) == [1, 2, 4, 8, 16, 32, 64, 128]
  assert "| T | updater | method | lag 1-1 | lag 2-3 |" in text and "lag 128-255 |" in text
  cells = " | ".join(["0.900"] * 6)
  assert f"| 128 | transformer | SMT→DMT | {cells} | 0.450 | — |" in text
  assert f"| 128 | transformer | its teacher | {' | '.join(['0.980'] * 6)} | 0.490 | — |" in text
  stack_teacher = f"| 128 | transformer | its teacher | {' | '.join(['0.950'] * 6)} | 0.475 |\n"
  assert stack_teacher in text  # The stack's table stops at T = 128's buckets.
  assert "| 256 | gru | BPTT | 1.000 |" in text


def test_test_read_runs_the_final_read_once_where_training_did_not(tmp_path, monkeypatch):
  """A run trained without the final evaluation gets its test read from evaluate_workdir on its
  last stage, with the read section only, as does one whose eval.json read another step (a run
  resumed after it); one that has it in eval.json is not evaluated again."""
  done = fake(tmp_path, "copy", 32, "transformer", "BPTT", 0.7)
  missing = fake(tmp_path, "copy", 32, "gru", "BPTT", 0.9)
  (tmp_path / "copy_T32_gru_BPTT" / "bptt" / "eval.json").unlink()
  stale = fake(tmp_path, "copy", 32, "mlp", "BPTT", 0.9)
  stale["stages"]["bptt"]["steps"] += 100
  calls = []

  def evaluate(workdir, overrides):
    calls.append((workdir, overrides))
    curve = {"acc": 0.25, "acc_interval": [0.2, 0.3], "num_sequences": 1024}
    return {"read": {"curves": {"rnn": curve}, "roles": {"rnn": "rnn"}}}

  monkeypatch.setattr(tasks, "evaluate_workdir", evaluate)
  assert tasks.test_acc(done) == 0.7 and tasks.test_acc(done, "teacher") is None
  assert calls == []
  assert tasks.format_test_acc(missing) == "0.250 [0.200, 0.300]"
  assert calls == [(str(tmp_path / "copy_T32_gru_BPTT" / "bptt"), {"eval.sections": ("read",)})]
  assert tasks.format_test_acc(stale) == "0.250 [0.200, 0.300]" and len(calls) == 2


def test_modular_reach_names_the_fewest_recent_pairs_near_the_ceiling(monkeypatch):
  """Per T, the Bayes reads of the last k pairs and the full ceiling; the verdict takes the
  largest over T of the fewest pairs within REACH_TOLERANCE (0.01) of the ceiling."""
  reads = {  # T -> (k = 0, 1, 2, 3), full ceiling.
    64: ((0.20, 0.90, 0.975, 0.98), 0.985),  # 2 pairs: 0.975 >= 0.985 - 0.01.
    128: ((0.22, 0.91, 0.99, 0.99), 0.99),  # 2 pairs.
  }

  def fake_ceiling(result, recent_pairs):
    return reads[result["run"]["tags"]["T"]][0][recent_pairs]

  monkeypatch.setattr(tasks, "ceiling", fake_ceiling)
  results = [{"run": {"tags": {"T": T}}} for T in (128, 64)]
  ceilings = lambda: {T: full for T, (_, full) in reads.items()}
  text = tasks.modular_reach(results, ceilings())
  assert "T = 64: 0: 0.200, 1: 0.900, 2: 0.975, 3: 0.980; every pair: 0.985" in text
  assert text.index("T = 64") < text.index("T = 128")
  assert "The last 2 pairs (5 tokens) come within 0.01 of the ceiling at every T" in text
  reads[128] = ((0.22, 0.91, 0.95, 0.97), 0.99)  # 3 pairs short by 0.02.
  assert tasks.modular_reach(results, ceilings()).endswith(
    "the last 3 pairs fall short of the ceiling."
  )


def test_claim_fails_without_smt_dmt_where_bptt_of_a_non_gated_updater_is_at_the_ceiling(
  tmp_path, monkeypatch
):
  """A BPTT run whose test interval reaches the task's ceiling (fake: 0.986) at T >= 128 decides
  the claim against SMT -> DMT before its cell is trained; the GRU's and T = 64's do not."""
  monkeypatch.setattr(tasks, "ceiling", lambda result: 0.986)
  gru = fake(tmp_path, "modular", 128, "gru", "BPTT", 0.99)  # Interval [0.970, 1.000].
  short = fake(tmp_path, "modular", 64, "mlp", "BPTT", 0.99)
  below = fake(tmp_path, "modular", 128, "transformer", "BPTT", 0.97)  # Up to 0.980.
  assert tasks.claim_holds([gru, short, below]) == (None, "")
  at = fake(tmp_path, "modular", 128, "mlp", "BPTT", 0.98)  # Up to 0.990 >= 0.986.
  holds, why = tasks.claim_holds([gru, short, below, at])
  assert holds is False
  assert why == "BPTT at the task's ceiling: mlp at T = 128 (0.980 [0.960, 0.990], ceiling 0.986)"
  text = tasks.claim_verdict([gru, short, below, at])
  assert f"modular: fails ({why}); stack: not measured." in text
  assert "It holds on 0 of these 4 tasks" in text


def test_a_bptt_run_stopped_short_of_its_budget_decides_only_where_it_is_ahead(
  tmp_path, monkeypatch
):
  """At T >= 128, BPTT ahead of SMT -> DMT fails the claim even when it was stopped by hand with
  budget left (the reason says so); stopped behind it, it leaves the pair undecided, and it is
  not counted as BPTT behind (or near chance) in the targets."""
  monkeypatch.setattr(tasks, "ceiling", lambda result: 1.0)

  def stopped(result):  # Its 4800 updates (the fake's) of a cap of 9600.
    result["stages"]["bptt"].update(cap=9600, concluded=True)
    return result

  smt_dmt = fake(tmp_path, "stack", 128, "mlp", "SMT→DMT", 0.80, 0.90, 300)
  behind = stopped(fake(tmp_path, "stack", 128, "mlp", "BPTT", 0.25))
  assert tasks.claim_holds([smt_dmt, behind]) == (None, "")
  text = tasks.task_verdict([smt_dmt, behind], chance=0.2)
  assert "mlp: SMT→DMT ≥ 0.9 of its teacher and above BPTT up to T = none decided" in text
  assert "BPTT within 0.1 of chance from T = none measured" in text
  behind["stages"]["bptt"].pop("concluded")  # The same read with its whole budget spent.
  assert tasks.claim_holds([smt_dmt, behind]) == (True, "")
  assert "BPTT within 0.1 of chance from T = 128" in tasks.task_verdict([smt_dmt, behind], 0.2)
  ahead = stopped(fake(tmp_path, "stack", 128, "mlp", "BPTT", 0.95))
  holds, why = tasks.claim_holds([smt_dmt, ahead])
  assert holds is False
  assert why == (
    "BPTT ahead: mlp at T = 128 (0.950 [0.930, 0.960] against SMT→DMT's 0.800 [0.780, 0.810]; "
    "BPTT stopped at 4800 of 9600 updates)"
  )
