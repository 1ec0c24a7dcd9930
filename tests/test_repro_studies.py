"""Fast checks of the reproduction studies (experiments/repro): every study's runs, full and
quick, build configs that validate, with unique names; the shared helpers behave."""

import copy
import functools
import json

import pytest

from experiments.cli import load_config_file
from experiments.repro import reporting, run_all, runner
from smt_jax.errors import ConfigError

pytestmark = pytest.mark.integration  # The studies' bookkeeping: second tier.


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
@pytest.mark.parametrize("name", sorted(run_all.STUDIES))
def test_study_runs_validate(name, quick):
  runs = run_all.STUDIES[name].runs(quick, 0)
  assert runs, name
  assert len({r.name for r in runs}) == len(runs), "run names must be unique"
  for run in runs:
    runner.validate_run(run)


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_credit_bptt_gets_the_pipeline_budget(quick):
  """BPTT gets 4 (T <= 32), 14 (T = 64) or 6 (T >= 128, the curriculum) times the updates of
  every SMT and DMT stage, except where budgets.UPDATER_FACTORS gives an updater its own (at
  least SMT -> DMT's wall-clock at the idle rates): the transformer 8 at T = 128, the MLP 8, 22,
  13 and 8 (T = 32 ... 256), the GRU 7 from T = 128 on; fine-tuning gets half the config's factor;
  every RNN is read from x[0] by the full-past teacher's pipeline, whose SMT -> DMT runs train
  the curriculum from T = 128 on, with DMT at lr 1e-3 (3e-3 below)."""
  from experiments.repro import credit

  for run in credit.runs(quick, 0):
    cfg = runner.run_config(run)
    T, st = cfg.data.T, cfg.pipeline.stages
    teacher = [s for s in st if st[s].method == "smt"]
    total = sum(st[s].train.num_steps for s in (*teacher, "dmt"))
    factor = 4 if T <= 32 else 14 if T == 64 else 6
    own_factor = {
      "transformer": {128: 8},
      "mlp": {32: 8, 64: 22, 128: 13, 256: 8},
      "gru": {128: 7, 256: 7},
    }.get(cfg.model.rnn.updater, {})
    bptt_run = run.overrides["pipeline.order"] == ["bptt"]
    expected = own_factor.get(T, factor) if bptt_run else factor
    assert st.bptt.train.num_steps == expected * total
    assert st.finetune.train.num_steps == factor * total // 2
    assert cfg.model.teacher.Tc == cfg.model.teacher.Tf == T and cfg.dmt.start == -1
    if T >= credit.CURRICULUM_FROM:
      teacher.sort(key=lambda s: st[s].data.T)
      assert [st[s].data.T for s in teacher] == [64 * 2**i for i in range(len(teacher))]
      assert st[teacher[-1]].data.T == T
      assert st.dmt.optim.lr == (3e-3 if T < 128 else 1e-3)  # Long rollouts: a smaller step.
      if run.overrides["pipeline.order"][0] != "bptt":
        assert run.overrides["pipeline.order"][: len(teacher)] == teacher


def test_overrides_reject_unknown_fields():
  run = runner.Run("r", "repro_retrieval.py:T=64", {"data.kwargs.pos_hi": 0.4}, 0, {})
  cfg = runner.run_config(run)
  assert cfg.data.T == 64 and cfg.model.teacher.Tc == 64  # The config argument reaches T.
  assert cfg.data.kwargs.pos_hi == 0.4  # Task knobs are free-form.
  with pytest.raises(KeyError):
    runner.run_config(runner.Run("r", "repro_retrieval.py:T=64", {"model.no_such_field": 1}, 0, {}))


def test_write_section_replaces_only_its_block(tmp_path):
  doc = tmp_path / "results.md"
  doc.write_text("# Results\n\nintro\n")
  reporting.write_section(doc, "a", "first")
  reporting.write_section(doc, "b", "second")
  reporting.write_section(doc, "a", "third")
  text = doc.read_text()
  assert "intro" in text and "third" in text and "second" in text and "first" not in text


def test_mean_std():
  assert reporting.mean_std([1.0, 1.0, 1.0]) == "1.000 ± 0.000"
  assert reporting.mean_std([0.5]) == "0.500"
  assert reporting.mean_std([None, float("nan")]) == "—"


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_studies_sharing_a_pool_agree_on_shared_runs(quick):
  """A run name in a pool means one config everywhere (else studies would retrain each other's
  runs), and the intended sharing happens: study 4 reads study 2's SMT -> DMT runs, studies 5
  and 6 read study 1's T = 32 runs."""
  by_folder = {}
  for study in run_all.STUDIES.values():
    for run in study.runs(quick, 0):
      spec = {k: v for k, v in run.to_json().items() if k != "tags"}
      key = (study.runs_folder(quick), run.name)
      assert by_folder.setdefault(key, spec) == spec, f"{key} has two configs"

  def names(study):
    s = run_all.STUDIES[study]
    return {(s.runs_folder(quick), r.name) for r in s.runs(quick, 0)}

  assert names("length") <= names("state")
  shared = names("credit") & (names("updaters") | names("ablations"))
  assert {n for _, n in shared} == {
    f"T32_{u}_smt-dmt_s{s}" for u in ("transformer", "mlp") for s in range(1 if quick else 3)
  }


def test_a_finished_run_is_reused_only_with_the_same_config(tmp_path):
  run = run_all.STUDIES["state"].runs(True, 1)[0]
  workdir = tmp_path / run.name
  workdir.mkdir()
  relabelled = runner.Run(**{**run.to_json(), "tags": {"other": "label"}})
  (workdir / "result.json").write_text(json.dumps({"run": relabelled.to_json()}))
  assert runner.is_finished(run, workdir, log=lambda _: None)
  changed = runner.Run(**{**run.to_json(), "seed": run.seed + 1})
  assert not runner.is_finished(changed, workdir, log=lambda _: None)
  assert not workdir.exists(), "a stale result must be removed before the run is redone"


def test_dmt_matters_verdict_follows_the_numbers():
  from experiments.repro import dmt_matters

  def row(acc, drift):
    return {"RNN acc from x[0]": acc, "drift (settled MSE)": drift}

  pairs = [((0.5, 0.4), (0.8, 0.1)), ((0.6, 0.2), (0.5, 0.3))]
  means = {
    "SMT stage of SMT→DMT": row(0.50, 0.40),
    "SMT only, whole budget": row(0.60, 0.35),
    "SMT→DMT": row(0.80, 0.10),
  }
  text = dmt_matters.verdict_text(means, pairs)
  assert "claim holds: DMT is more accurate" in text
  assert "accuracy up in 1/2, drift down in 1/2" in text
  means["SMT→DMT"] = row(0.61, 0.10)  # Within 0.02 of the whole-budget SMT run.
  assert "holds for drift only" in dmt_matters.verdict_text(means, pairs)
  means["SMT→DMT"] = row(0.90, 0.36)
  assert "holds for accuracy only" in dmt_matters.verdict_text(means, pairs)
  means["SMT→DMT"] = row(0.55, 0.50)
  assert "does not hold" in dmt_matters.verdict_text(means, pairs)


def test_memory_collapse_rule():
  from experiments.repro.updaters import collapsed

  ref = {"encoder eff. dims": 8.0, "encoder cross-seq cos": 0.5}
  assert collapsed({"encoder eff. dims": 5.9, "encoder cross-seq cos": 0.5}, ref)
  assert collapsed({"encoder eff. dims": 8.0, "encoder cross-seq cos": 0.61}, ref)
  assert not collapsed({"encoder eff. dims": 6.1, "encoder cross-seq cos": 0.59}, ref)


def test_credit_verdict_checks_the_x0_targets_against_bptt():
  from experiments.repro import credit

  def cells(smt, bptt, Ts=(32, 128, 256)):
    out = {}
    for updater in (*credit.UPDATERS, credit.REFERENCE):
      for method, accs in (("SMT→DMT", smt), ("BPTT", bptt)):
        for T, acc in zip(Ts, accs):
          wall, steps = (100.0, 100) if method == "SMT→DMT" else (50.0, 300)
          stage = {"rnn_acc": acc, "wall_s": wall, "steps": steps}
          name = f"T{T}_{updater}_{method}_s0"
          out[(updater, method, T)] = [{"run": {"name": name}, "stages": {"x": stage}}]
    return out

  text = credit.verdict_text(cells((0.95, 0.7, 0.5), (0.14, 0.3, 0.2)), [32, 128, 256], {})
  assert (
    "transformer, T = 32: SMT→DMT 0.95, BPTT 0.14 → target (≥ 0.9 vs ≤ 0.3) met (BPTT had 0.50x "
    "SMT→DMT's measured wall-clock)" in text
  )
  # With the idle rates (experiments/bench/rates.py): SMT→DMT 100 updates at 1/s, BPTT 300 at
  # 2/s, so BPTT had 150 / 100 = 1.5x at the idle rates where the loaded walls say 0.5x.
  rates = {"T32_transformer_SMT→DMT/x": 1.0, "T32_transformer_BPTT/x": 2.0}
  idle_text = credit.verdict_text(cells((0.95,), (0.14,), Ts=(32,)), [32], rates)
  assert "(BPTT had 1.50x SMT→DMT's wall-clock at the idle rates, 0.50x measured)" in idle_text
  assert (
    "mlp, T = 32: SMT→DMT 0.95, BPTT 0.14 → target (≥ 0.9 vs ≤ 0.3) met (BPTT had 0.50x "
    in idle_text
  )
  assert "T = 128: SMT→DMT 0.70, BPTT 0.30 → target (≥ 0.7 vs ≤ 0.3) met" in text
  assert "T = 256: SMT→DMT 0.50, BPTT 0.20 → no target set" in text
  text = credit.verdict_text(cells((0.89, 0.9), (0.14, 0.31)), [32, 128], {})
  assert "T = 32: SMT→DMT 0.89, BPTT 0.14 → target (≥ 0.9 vs ≤ 0.3) not met" in text
  assert "T = 128: SMT→DMT 0.90, BPTT 0.31 → target (≥ 0.7 vs ≤ 0.3) not met" in text
  tuned = cells((0.8,), (0.13,), Ts=(32,))
  tuned[("transformer", "SMT→DMT→BPTT", 32)] = [
    {"stages": {"smt": {"method": "smt", "teacher_acc": 0.76}, "x": {"rnn_acc": 0.9}}}
  ]
  assert (
    "transformer, T = 32: Fine-tuned by BPTT, the SMT→DMT RNN reaches 0.900: above BPTT from "
    "scratch (0.130), and above the teacher (0.760); " in credit.verdict_text(tuned, [32], {})
  )
  missing = cells((0.95, 0.9), (0.14, 0.2))
  del missing[("mlp", "SMT→DMT", 128)]
  assert "mlp, T = 128: not both methods finished; no verdict" in credit.verdict_text(
    missing, [32, 128], {}
  )


def test_gru_collapse_is_judged_against_every_other_updater(tmp_path):
  from experiments.repro import updaters

  def result(updater, dims, cos):
    spread = {"eff_dim": dims, "feature_std": 1.0, "cross_cos": cos}
    return {
      "run": {"tags": {"updater": updater}},
      "stages": {
        "smt": {
          "rnn_acc": 0.5,
          "spread": {"encoder": spread, "rnn": spread},
          "wall_s": 40.0,
          "steps": 4,
        },
        "dmt": {"rnn_acc": 0.9, "wall_s": 60.0, "steps": 2},
      },
    }

  rep = reporting.Report(updaters.STUDY, tmp_path, quick=False)
  # Below 3/4 of the transformer's dimensions but not of the MLP's: no collapse.
  text = updaters.report(
    [result("transformer", 8.0, 0.6), result("mlp", 5.0, 0.6), result("gru", 5.3, 0.6)], rep
  )
  assert "does not collapse" in text
  text = updaters.report(
    [result("transformer", 8.0, 0.6), result("mlp", 5.0, 0.6), result("gru", 3.0, 0.6)], rep
  )
  assert "collapses the memory space next to every other updater" in text


def test_runs_flag_trains_only_the_matching_runs(tmp_path, monkeypatch):
  from experiments.repro import credit

  trained = []
  monkeypatch.setattr(
    runner, "execute", lambda todo, jobs, conclude=False: trained.extend(r.name for r, _ in todo)
  )
  argv = ["--runs", "^T64_(transformer|gru)_", "--out", str(tmp_path), "--doc", ""]
  runner.run_studies([credit.STUDY], argv, "credit.py")
  assert sorted(trained) == [
    "T64_gru_bptt_s0",
    "T64_transformer_bptt_s0",
    "T64_transformer_smt-dmt_s0",
  ]


def test_only_the_runs_that_will_train_are_validated(tmp_path, monkeypatch):
  """--runs selects what is validated as well as what trains; --report_only validates nothing
  (a study's other runs may need data this machine has not prepared)."""
  from experiments.repro import credit

  validated, trained = [], []
  monkeypatch.setattr(runner, "validate_run", lambda run: validated.append(run.name))
  monkeypatch.setattr(
    runner, "execute", lambda todo, jobs, conclude=False: trained.extend(r.name for r, _ in todo)
  )
  argv = ["--runs", "^T64_gru_", "--out", str(tmp_path), "--doc", ""]
  runner.run_studies([credit.STUDY], argv, "credit.py")
  assert validated == trained == ["T64_gru_bptt_s0"]
  validated.clear()
  runner.run_studies([credit.STUDY], argv + ["--report_only"], "credit.py")
  assert validated == []


def test_a_driver_with_unprepared_data_exits_with_one_line_and_trains_nothing(
  tmp_path, monkeypatch
):
  """Study 7's MNIST runs in a working folder where no pixel data is prepared: one line naming
  the MNIST prepare command, status 1, no training and no run folder. The digits runs, which
  come first in the study and are not selected, are not validated (they would fail first)."""
  from experiments.repro import pixels

  assert list(pixels.DATASETS)[0] == "digits"  # What makes the second half of the check bite.
  monkeypatch.chdir(tmp_path)  # The configs' data paths are relative: nothing is prepared here.
  trained = []
  monkeypatch.setattr(runner, "execute", lambda todo, jobs, conclude=False: trained.extend(todo))
  argv = ["--runs", "^mnist_transformer_smt", "--out", str(tmp_path / "out"), "--doc", ""]
  with pytest.raises(SystemExit) as e:
    runner.main(pixels.STUDY, argv)
  message = str(e.value.code)
  assert message.startswith("error: no prepared 'mnist' data in workdirs/data/mnist-14px-16levels")
  assert "python -m smt_jax.data.prepare mnist --size 14 --levels 16" in message
  assert "\n" not in message
  assert trained == [] and not (tmp_path / "out").exists()


def test_stream_window_verdict_needs_both_within_tolerance():
  near = reporting.stream_window_verdict(
    {"stream": 0.86, "window": 0.9}, {"stream": 1, "window": 1}
  )
  assert "within 0.05 or better (the streaming teacher's target met)" in near
  for acc, teacher in (((0.84, 0.9), (1.0, 1.0)), ((0.9, 0.9), (0.9, 0.96))):
    far = reporting.stream_window_verdict(
      dict(zip(("stream", "window"), acc)), dict(zip(("stream", "window"), teacher))
    )
    assert "more than 0.05 below (the streaming teacher's target not met)" in far


def test_subset_verdict_reports_accuracy_and_smt_wall_clock_of_each_variant():
  from experiments.repro import ablations

  full = {"acc after SMT→DMT": 0.857, "teacher acc": 0.826, "SMT wall s": 120.4}
  same = {"acc after SMT→DMT": 0.75, "teacher acc": 0.8, "SMT wall s": 70.6}
  wall = {"acc after SMT→DMT": 0.9, "teacher acc": 0.85, "SMT wall s": 119.0}
  text = ablations.subset_verdict(full, {"same updates": same, "same wall": wall})
  assert text == (
    "decoding all memories: RNN from x[0] 0.857, teacher 0.826, SMT 120 s; same updates: 0.750, "
    "teacher 0.800, SMT 71 s, same wall: 0.900, teacher 0.850, SMT 119 s (SMT wall-clock per run "
    "as measured, at different loads)"
  )


def test_idle_wall_sums_each_stage_at_its_rate():
  """Seeds share a rate; a stage without one leaves the run without an idle wall-clock."""
  result = {
    "run": {"name": "T128_mlp_smt-dmt_s2"},
    "stages": {"smt64": {"steps": 2400}, "smt128": {"steps": 200}, "dmt": {"steps": 2000}},
  }
  rates = {"T128_mlp_smt-dmt/smt64": 2.0, "T128_mlp_smt-dmt/smt128": 0.5}
  assert reporting.idle_wall(result, rates) is None
  rates["T128_mlp_smt-dmt/dmt"] = 8.0
  assert reporting.idle_wall(result, rates) == 2400 / 2.0 + 200 / 0.5 + 2000 / 8.0  # 1850 s


def test_rates_time_each_distinct_stage_config_once(monkeypatch):
  """The curriculum's T = 128 and T = 256 runs share their SMT stage at 64 (and seeds share
  everything): each distinct stage config is timed once, every run's stage gets a rate, and no
  stage loads the checkpoint it is initialised from in training."""
  from experiments.bench import rates
  from experiments.repro import credit

  timed = []
  monkeypatch.setattr(
    rates, "updates_per_second", lambda cfg, seconds: timed.append(cfg) or float(len(timed))
  )
  runs = [
    r
    for r in credit.runs(False, 2)
    if r.name.startswith(("T128_mlp_smt-dmt", "T256_mlp_smt-dmt", "T256_mlp_bptt"))
  ]
  measured, fingerprints = rates.measure(runs, 0.0, log=lambda *a: None)
  assert sorted(measured) == sorted(
    ["T128_mlp_smt-dmt/" + s for s in ("smt64", "smt128", "dmt")]
    + ["T256_mlp_smt-dmt/" + s for s in ("smt64", "smt128", "smt256", "dmt")]
    + ["T256_mlp_bptt/bptt"]
  )
  assert sorted(fingerprints) == sorted(measured)
  assert measured["T128_mlp_smt-dmt/smt64"] == measured["T256_mlp_smt-dmt/smt64"]
  assert measured["T128_mlp_smt-dmt/dmt"] != measured["T256_mlp_smt-dmt/dmt"]  # T differs.
  assert fingerprints["T128_mlp_smt-dmt/smt64"] == fingerprints["T256_mlp_smt-dmt/smt64"]
  assert fingerprints["T128_mlp_smt-dmt/dmt"] != fingerprints["T256_mlp_smt-dmt/dmt"]
  assert len(timed) == 6 and all(c.ckpt.init_from == "" for c in timed)


def test_rates_merge_keeps_each_entry_measurement(tmp_path, monkeypatch):
  """A partial re-measure replaces only its entries' rates and notes; the others keep theirs."""
  from experiments.bench import rates

  path = tmp_path / "rates_cpu.json"
  first = {"utc": "2026-11-29 18:42", "load_before": 0.9, "load_after": 1.7, "commit": "a"}
  second = {"utc": "2026-11-30 09:00", "load_before": 0.1, "load_after": 0.3, "commit": "b"}
  configs = {"T32_mlp_bptt/bptt": "m32", "T32_gru_bptt/bptt": "g32", "T64_gru_bptt/bptt": "g64"}
  rates.write_merged(
    path, {"T32_mlp_bptt/bptt": 50.0, "T32_gru_bptt/bptt": 40.0}, first, {}, configs
  )
  rates.write_merged(
    path, {"T32_gru_bptt/bptt": 44.0, "T64_gru_bptt/bptt": 20.0}, second, {}, configs
  )
  written = json.loads(path.read_text())
  assert written["rates"] == {
    "T32_mlp_bptt/bptt": 50.0,
    "T32_gru_bptt/bptt": 44.0,
    "T64_gru_bptt/bptt": 20.0,
  }
  assert written["measured"] == {
    "T32_mlp_bptt/bptt": {**first, "config": "m32"},
    "T32_gru_bptt/bptt": {**second, "config": "g32"},
    "T64_gru_bptt/bptt": {**second, "config": "g64"},
  }
  monkeypatch.setattr(reporting, "rates_path", lambda backend: path)
  assert reporting.load_rates() == written["rates"]  # What the reports read.
  assert reporting.load_rate_notes() == written["measured"]  # What --list checks.


def test_cost_fingerprint_changes_with_what_an_update_computes_only():
  """Rates hold across learning rates, caps, evaluation and logging, and the fields the method
  ignores (SMT: DMT's settings; BPTT: the decoded future's length); not across T, the model,
  the batch or the method's own settings."""
  base = load_config_file("experiments/configs/default.py")
  same = {
    "optim.lr": 0.5,
    "train.num_steps": 7,
    "train.eval_every": 3,
    "train.stop_at_metric": "rnn_acc",
    "log.every": 9,
    "ckpt.keep": 1,
    "eval.num_batches": 2,
    "seed": 5,
    "dmt.grad_steps": 3,
  }
  other = {
    "data.T": base.data.T * 2,
    "model.teacher.Tf": 1,
    "model.d_model": base.model.d_model + 8,
    "train.batch_size": base.train.batch_size * 2,
    "smt.n_t": 4,
    "method": "bptt",
  }
  fingerprint = reporting.cost_fingerprint(base)

  def changed(field, value, cfg=base):
    cfg = copy.deepcopy(cfg)
    *groups, name = field.split(".")
    setattr(functools.reduce(getattr, groups, cfg), name, value)
    return reporting.cost_fingerprint(cfg)

  assert all(changed(f, v) == fingerprint for f, v in same.items())
  assert all(changed(f, v) != fingerprint for f, v in other.items())
  bptt = copy.deepcopy(base)
  bptt.method = "bptt"
  assert changed("model.teacher.Tf", 1, bptt) == reporting.cost_fingerprint(bptt)
  assert changed("bptt.remat", not bptt.bptt.remat, bptt) != reporting.cost_fingerprint(bptt)


def fake_run_folder(workdir, run) -> None:
  """A finished run folder as the worker leaves it: result.json, the stage's files, a
  checkpoint, a best checkpoint's orbax step folder and its evaluation, a lock, log and spec."""
  files = {
    "result.json": json.dumps({"run": run.to_json(), "stages": {"smt": {}}, "wall_s": 1.0}),
    "config.json": "{}",
    "log.txt": "log",
    "run.json": "{}",
    "smt/config.json": "{}",
    "smt/metrics.jsonl": '{"step": 1}\n',
    "smt/eval.json": "{}",
    "smt/samples.txt": "abc",
    "smt/samples.png": "png",
    "smt/read.png": "png",
    "smt/.lock": "",
    "smt/checkpoints/10/params/d/blob": "weights",
    "smt/best/10/params/d/blob": "weights",
    "smt/best/eval.json": "{}",
  }
  for rel, text in files.items():
    (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
    (workdir / rel).write_text(text)


def test_a_record_keeps_what_reports_read_and_no_checkpoint(tmp_path):
  from experiments.repro import records

  run = runner.Run("r", "smoke.py", {}, 0, {})
  workdir = tmp_path / "out" / "pool" / "runs" / "r"
  fake_run_folder(workdir, run)
  dest = records.record_dir(tmp_path / "records", workdir)
  assert dest == tmp_path / "records" / "pool" / "r"
  (dest / "stale.json").parent.mkdir(parents=True)
  (dest / "stale.json").write_text("{}")  # An older record is replaced whole.
  records.save(workdir, dest)
  kept = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
  assert kept == [
    "config.json",
    "result.json",
    "smt/best/eval.json",
    "smt/config.json",
    "smt/eval.json",
    "smt/metrics.jsonl",
    "smt/samples.png",
    "smt/samples.txt",
  ]
  assert records.find(run.to_json(), dest)["workdir"] == str(dest)
  relabelled = runner.Run("r", "smoke.py", {}, 0, {"method": "other label"})
  assert records.find(relabelled.to_json(), dest) is not None  # Tags are labels.
  assert records.find(runner.Run("r", "smoke.py", {}, 1, {}).to_json(), dest) is None
  with pytest.raises(FileNotFoundError, match="only a finished run has a record"):
    records.save(tmp_path, tmp_path / "records" / "x")


def test_report_cache_keeps_reads_and_a_record_without_them_names_the_fix(tmp_path):
  from experiments.repro import records

  calls = []

  def read():
    calls.append(1)
    return (1.5, (1.25, 1.75), 30)

  result = {"run": {"name": "r"}, "workdir": str(tmp_path)}
  assert records.cached(result, "read/a", read) == [1.5, [1.25, 1.75], 30]
  assert records.cached(result, "read/a", read) == [1.5, [1.25, 1.75], 30]
  assert len(calls) == 1, "a cached read is not computed again"
  assert json.loads((tmp_path / records.CACHE).read_text()) == {"read/a": [1.5, [1.25, 1.75], 30]}
  recorded = {**result, "recorded": True}
  assert records.cached(recorded, "read/a", read) == [1.5, [1.25, 1.75], 30]
  with pytest.raises(FileNotFoundError, match="run r is a record without checkpoints.*'read/b'"):
    records.cached(recorded, "read/b", read)
  assert len(calls) == 1


def test_a_recorded_run_is_not_trained_again_and_its_report_reads_the_record(tmp_path, monkeypatch):
  """A study whose run folder is gone but whose record is in the records root: the run is not
  trained, and the report reads the record (its cache, its files); a run that finishes here is
  recorded after the report, with the cache the report filled."""
  from experiments.repro import records

  recorded_run = runner.Run("old", "smoke.py", {}, 0, {})
  new_run = runner.Run("new", "smoke.py", {}, 0, {})
  root, out = tmp_path / "records", tmp_path / "out"
  elsewhere = tmp_path / "other_machine" / "study" / "runs" / "old"
  fake_run_folder(elsewhere, recorded_run)
  records.cached({"workdir": str(elsewhere)}, "bits", lambda: 1.25)
  records.save(elsewhere, root / "study" / "old")

  def fake_execute(todo, jobs, conclude=False):
    assert [run.name for run, _ in todo] == ["new"]
    for run, workdir in todo:
      fake_run_folder(workdir, run)

  def report(results, rep):
    return "; ".join(
      f"{r['run']['name']}: {records.cached(r, 'bits', lambda: 2.5)}" for r in results
    )

  monkeypatch.setattr(runner, "execute", fake_execute)
  monkeypatch.setattr(runner, "validate_run", lambda run: None)
  study = runner.Study(
    "study", "A study", "a claim", lambda quick, seeds: [recorded_run, new_run], report
  )
  argv = ["--out", str(out), "--doc", "", "--records", str(root)]
  report_path = runner.run_studies([study], argv, "study.py")[0]
  assert "old: 1.25; new: 2.5" in report_path.read_text()
  assert not (out / "study" / "runs" / "old").exists()
  assert (
    records.cached({"workdir": str(root / "study" / "new"), "recorded": True}, "bits", None) == 2.5
  )
  assert (root / "study" / "new" / "smt" / "metrics.jsonl").is_file()


def test_list_gives_each_runs_state_and_the_idle_hours_left(tmp_path, monkeypatch):
  """--list: a run finished here (at the idle wall-clock of the updates it took, not of its
  plan), one finished with another config (stale: trains again), one recorded elsewhere, one
  never run and one started (checkpoints of SMT, then of DMT at 700); the hours left sum the
  idle wall-clock of what the last three still train (default.py: SMT 400, DMT 1000, BPTT 9000
  updates), naming the one without rates."""
  from experiments.repro import records

  here, stale, recorded, new, started = (runner.Run(n, "default.py", {}, 0, {}) for n in "abcde")
  runs_dir, root = tmp_path / "out" / "pool" / "runs", tmp_path / "records"
  fake_run_folder(runs_dir / "a", here)
  taken = {"run": here.to_json(), "stages": {"smt": {"steps": 100}, "dmt": {"steps": 50}}}
  (runs_dir / "a" / "result.json").write_text(json.dumps(taken))  # Stopped early: 100 + 50.
  ran = runner.run_config(here).to_dict()  # Trained before the file changed d_model and the
  ran["model"]["d_model"] += 1  # ... fine-tuning's lr (not one of the stages it runs).
  ran["pipeline"]["stages"]["finetune"]["optim"]["lr"] = 0.5
  (runs_dir / "a" / "config.json").write_text(json.dumps(ran))
  fake_run_folder(runs_dir / "b", runner.Run("b", "default.py", {}, 1, {}))
  fake_run_folder(tmp_path / "x" / "pool" / "runs" / "c", recorded)
  records.save(tmp_path / "x" / "pool" / "runs" / "c", root / "pool" / "c")
  for stage, step in (("smt", 300), ("dmt", 500), ("dmt", 700)):  # SMT stopped short of 400.
    (runs_dir / "e" / stage / "checkpoints" / str(step)).mkdir(parents=True)
  rates = {"a/smt": 0.25, "a/dmt": 1.0}  # Took 400 + 50 s.
  rates.update({"d/smt": 0.25, "d/dmt": 1.0, "d/bptt": 9.0})  # 1600 + 1000 + 1000 s.
  rates.update({"e/smt": 0.25, "e/dmt": 1.0, "e/bptt": 9.0})  # 0 + 300 + 1000 s left.
  monkeypatch.setattr(reporting, "load_rates", lambda: rates)
  # d's rates: BPTT's measured for today's config, DMT's for another, SMT's before fingerprints.
  bptt_config = runner.stage_config(runner.run_config(new), "bptt", "")
  notes = {"d/bptt": {"config": reporting.cost_fingerprint(bptt_config)}, "d/dmt": {"config": "0"}}
  monkeypatch.setattr(reporting, "load_rate_notes", lambda: {**notes, "d/smt": {}})
  lines = []
  runner.list_runs(
    [(r, runs_dir / r.name) for r in (here, stale, recorded, new, started)], root, lines.append
  )
  states = [line.split()[1:3] for line in lines[:4]]
  assert states == [["finished", "here"], ["stale", "—"], ["recorded", "—"], ["to", "train"]]
  d = ran["model"]["d_model"]
  changed = f"its config file now differs at model.d_model (ran {d}, now {d - 1})"
  assert lines[0].endswith(f"450 s idle; {changed}")
  stale = "its idle rate of dmt was measured for another config"
  assert lines[3].endswith(f"3600 s idle; {stale} (experiments/bench/rates.py re-measures it)")
  assert not any("idle rate of" in line for i, line in enumerate(lines) if i != 3)
  assert lines[4].split()[1:4] == ["started:", "dmt", "700/1000"]
  assert lines[4].endswith("1300 s idle")
  assert lines[5].strip() == "3 of 5 to train: 1.4 h at idle rates (and 1 without measured rates)"
  assert (runs_dir / "b").exists(), "listing changes nothing"


def test_config_changes_leave_out_the_fields_every_stage_ignores(tmp_path):
  """A BPTT-only run: its config file's new decoded-future length and SMT setting are not
  changes to it (Method.ignores); a new width is. The same new Tf is a change to a run whose
  SMT stage decodes."""
  bptt_only = runner.Run("b", "default.py", {"pipeline.order": ("bptt",)}, 0, {})
  with_smt = runner.Run("s", "default.py", {"pipeline.order": ("smt", "bptt")}, 0, {})

  def changes(run, **fields):
    ran = runner.run_config(run)
    ran.update_from_flattened_dict(fields)
    (tmp_path / "config.json").write_text(ran.to_json_best_effort())
    return runner.config_changes(run, tmp_path)

  tf = runner.run_config(bptt_only).model.teacher.Tf
  assert changes(bptt_only, **{"model.teacher.Tf": tf + 1, "smt.coef_dyn": 0.5}) == ""
  width = runner.run_config(bptt_only).model.d_model
  assert "model.d_model" in changes(bptt_only, **{"model.d_model": width + 8})
  assert "model.teacher.Tf" in changes(with_smt, **{"model.teacher.Tf": tf + 1})


def test_conclude_refuses_a_run_that_never_started_before_anything_runs(tmp_path, monkeypatch):
  """--conclude on a run without a checkpoint of its last stage: one ConfigError naming the run
  and the fix, before any run is executed or any folder made."""
  from experiments.repro import tasks

  executed = []
  monkeypatch.setattr(runner, "execute", lambda todo, jobs, conclude=False: executed.append(todo))
  argv = ["--runs", "^stack_T64_mlp_bptt$", "--conclude", "--out", str(tmp_path), "--doc", ""]
  with pytest.raises(ConfigError, match="--conclude: stack_T64_mlp_bptt has no checkpoint"):
    runner.run_studies([tasks.STUDY], argv + ["--records", ""], "tasks.py")
  assert executed == [] and not any(tmp_path.iterdir())
