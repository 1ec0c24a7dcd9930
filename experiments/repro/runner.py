"""Running the reproduction studies (experiments/repro/STUDY.py): runs, studies, the queue.

A study is a list of `Run`s (a config file, dotted overrides, a seed, tags for the tables) and a
`report` function that turns their results into a Markdown section (helpers in `reporting`).
`main(study)` gives every study the same command line:

  python experiments/repro/STUDY.py [--quick] [--out DIR] [--jobs N] [--doc PATH] [--seeds N]
                                    [--runs REGEX] [--report_only] [--list] [--records DIR]
                                    [--conclude]

Each run trains through `smt_jax.train.pipeline.run_pipeline` (or `train_and_evaluate` for a
single stage) in its own subprocess, into OUT/POOL/runs/NAME, and leaves result.json there; a
re-run skips runs whose result.json exists with the same config (delete it to redo one), and
runs recorded in git with the same config (experiments/repro/records.py; after writing its
reports a full-size driver records every finished run, so another machine can re-write the
reports without the run folders, or finish the runs left). Studies
that share a pool share the runs they have in common (same name, config, seed and measures), so
e.g. the length study reads the state study's SMT -> DMT runs instead of training them again.
"""

import argparse
import contextlib
import dataclasses
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from absl import logging

from experiments.cli import load_config_file, one_line
from experiments.repro import records, reporting
from smt_jax.checkpointing import checkpoint_dir
from smt_jax.config import changed_fields, strict
from smt_jax.errors import ConfigError
from smt_jax.eval.measures import memory_spread
from smt_jax.objectives import method_of
from smt_jax.train import train_and_evaluate
from smt_jax.train.pipeline import read_start_name, run_pipeline, stage_config, stage_names
from smt_jax.train.validate import validate

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = REPO / "experiments" / "configs"
MEASURES = {"spread": memory_spread}


@dataclasses.dataclass(frozen=True)
class Run:
  """One training pipeline of a study.

  name: unique within the study (also the folder name). config: file in experiments/configs.
  overrides: {"dotted.field": value} applied on top of the config (pipeline stages included,
  e.g. "pipeline.stages.smt.train.num_steps"). seed: config.seed. tags: the run's coordinates in
  the study's tables ({"T": 64, "method": "bptt"}). measure: extra measurements after training,
  names of functions in MEASURES run on the named stage ({"spread": "smt"}).
  """

  name: str
  config: str
  overrides: dict
  seed: int
  tags: dict
  measure: dict = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Study:
  """A study: its claim, its runs (full or quick) and its report."""

  name: str  # File stem and docs/results.md section id.
  title: str
  claim: str  # The paper's claim being tested, in one sentence.
  runs: Callable[[bool, int], list]  # (quick, seeds) -> [Run]
  report: Callable[[list, "reporting.Report"], str]  # (results, report helper) -> Markdown body
  pool: str = ""  # Folder of its runs, shared with the studies naming the same pool; "" = name.

  def folder(self, quick: bool) -> str:
    """Folder of this study's report (under OUT)."""
    return self.name + ("_quick" if quick else "")

  def runs_folder(self, quick: bool) -> str:
    """Folder of this study's runs (under OUT): its pool's."""
    return (self.pool or self.name) + ("_quick" if quick else "")


def load_config(name: str):
  """get_config() of experiments/configs/NAME[.py][:ARG], loaded as --config=FILE:ARG loads it
  for experiments/run.py (experiments.cli.load_config_file)."""
  name, colon, arg = name.partition(":")
  path = CONFIGS / (name if name.endswith(".py") else f"{name}.py")
  return load_config_file(f"{path}{colon}{arg}")


def run_config(run: Run):
  """The full (pipeline) config of a run: its config file with the run's overrides applied
  (KeyError for a field the schema does not have), seed set and the progress bar off."""
  cfg = strict(load_config(run.config))
  cfg.update_from_flattened_dict(run.overrides)
  cfg.seed = run.seed
  cfg.log.progress = False
  return cfg


def validate_run(run: Run) -> None:
  """Validates every stage of a run's config (raises smt_jax.errors.ConfigError)."""
  cfg = run_config(run)
  names = stage_names(cfg)
  if not names:
    validate(cfg)
  for s in names:
    stage = stage_config(cfg, s, "/nonexistent")
    validate(stage, init_from_pending=stage.ckpt.init_from.startswith("/nonexistent"))


def _final_eval_extract(path: pathlib.Path) -> dict:
  """The scalar parts of a stage's eval.json worth tabulating."""
  if not path.is_file():
    return {}
  ev = json.loads(path.read_text())
  out = {}
  if "drift" in ev:
    out["drift_settled"] = ev["drift"]["drift_settled"]
    out["one_step"] = ev["drift"]["one_step_mean"]
    out["drift_curve"] = ev["drift"]["drift"]  # MSE after 1, 2, ... updates of the rollout.
  if "length" in ev:
    out["length"] = {k: ev["length"].get(k) for k in ("lengths", "rnn_acc", "teacher_acc")}
  if "read" in ev:
    out["read"] = {
      name: {"acc": c["acc"], "loss": c["loss"]} for name, c in ev["read"]["curves"].items()
    }
  return out


def run_worker(spec_path: str) -> None:
  """Subprocess body: trains one Run into its folder and writes result.json."""
  logging.set_verbosity(logging.WARNING)
  spec = json.loads(pathlib.Path(spec_path).read_text())
  run, workdir = Run(**spec["run"]), pathlib.Path(spec["workdir"])
  cfg, caps = concluded_config(run, workdir) if spec.get("conclude") else (run_config(run), {})
  start = time.time()
  names = stage_names(cfg)
  if names:
    rows = run_pipeline(cfg, workdir)
    configs = {s: stage_config(cfg, s, workdir) for s in names}
  else:
    final = train_and_evaluate(cfg, workdir / cfg.method)
    names, configs = [cfg.method], {cfg.method: cfg}
    rows = [
      {
        "stage": cfg.method,
        "method": cfg.method,
        "rnn_read_from": read_start_name(cfg),
        "rnn_acc": final["rnn_acc"],
        "rnn_loss": final["rnn_loss"],
        "teacher_acc": final.get("teacher_acc"),
        "updates": final["step"],
        "wall_s": final["wall_s"],
        "workdir": str(workdir / cfg.method),
      }
    ]
  stages = {}
  for row in rows:
    s = row["stage"]
    stages[s] = {
      k: row.get(k)
      for k in (
        "method",
        "rnn_read_from",
        "rnn_acc",
        "rnn_loss",
        "rnn_acc_enc",
        "teacher_acc",
        "wall_s",
      )
    }
    # Updates taken, and the stage's cap (more where train.stop_at_value stopped it early).
    stages[s]["steps"] = int(row["updates"])
    stages[s]["cap"] = int(caps.get(s, configs[s].train.num_steps))
    if s in caps and stages[s]["steps"] < stages[s]["cap"]:
      stages[s]["concluded"] = True  # Ended by --conclude with budget left.
    stages[s]["batch_size"] = int(configs[s].train.batch_size)
    stages[s].update(_final_eval_extract(pathlib.Path(row["workdir"]) / "eval.json"))
  for measure, stage in run.measure.items():
    stages[stage][measure] = MEASURES[measure](configs[stage], str(workdir / stage))
  result = {
    "run": run.to_json(),
    "stages": stages,
    "wall_s": time.time() - start,
    "workdir": str(workdir),
  }
  (workdir / "result.json").write_text(json.dumps(result, indent=1, default=float) + "\n")


def concluded_config(run: Run, workdir: pathlib.Path):
  """(config, caps) that end a started run at its newest checkpoint (--conclude): the run's
  config with its last stage's train.num_steps cut to that checkpoint's step, so that the worker
  resumes there and only evaluates; caps: {last stage: its planned num_steps}. Raises
  ConfigError unless the last stage has a checkpoint (a run still in an earlier stage, such as
  its teacher, has no last-stage result to record)."""
  cfg = run_config(run)
  planned = planned_steps(run)
  last = list(planned)[-1]
  step = newest_step(workdir / last)
  if step is None:
    raise ConfigError(
      f"--conclude: {run.name} has no checkpoint of its last stage ({last}) in {workdir}, so "
      "there is nothing to end it at; train it without --conclude, or leave it out of --runs."
    )
  key = f"pipeline.stages.{last}.train.num_steps" if stage_names(cfg) else "train.num_steps"
  cfg.update_from_flattened_dict({key: min(step, planned[last]["steps"])})
  return cfg, {last: planned[last]["steps"]}


def planned_steps(run: Run) -> dict:
  """{stage: {"steps": its config's num_steps}} of a run, in order (a single run: its method)."""
  cfg = run_config(run)
  names = stage_names(cfg)
  if not names:
    return {cfg.method: {"steps": cfg.train.num_steps}}
  return {s: {"steps": stage_config(cfg, s, "/unused").train.num_steps} for s in names}


def planned_idle_wall(run: Run, rates: dict):
  """The run's wall-clock at the idle rates (reporting.idle_wall of its planned steps), None
  where experiments/bench/rates.py has not measured each of its stages."""
  return reporting.idle_wall({"run": run.to_json(), "stages": planned_steps(run)}, rates)


def steps_left(run: Run, workdir: pathlib.Path) -> dict:
  """{stage: {"steps": updates still to train}} of a run resumed from its newest checkpoints in
  workdir: a stage before the last one with a checkpoint is done (a teacher may have stopped
  short of its cap), the last one resumes at its checkpoint's step, the later ones are whole."""
  planned = planned_steps(run)
  pipeline = bool(stage_names(run_config(run)))
  saved = {s: newest_step(workdir / s if pipeline else workdir) for s in planned}
  started = [i for i, s in enumerate(planned) if saved[s] is not None]
  if not started:
    return planned
  return {
    s: {"steps": 0 if i < started[-1] else p["steps"] - (saved[s] or 0)}
    for i, (s, p) in enumerate(planned.items())
  }


def newest_step(folder: pathlib.Path) -> int | None:
  """The step of the newest checkpoint saved in folder (None without one)."""
  ckpt = checkpoint_dir(folder) if folder.is_dir() else None
  return max(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt else None


def run_state(run: Run, workdir: pathlib.Path, root: pathlib.Path | None) -> str:
  """ "finished here", "recorded" (finished elsewhere, in the records under `root`), "stale" (a
  result of another config here: it trains again), "started" (checkpoints here: it resumes) or
  "to train"."""
  if (workdir / "result.json").is_file():
    done = json.loads((workdir / "result.json").read_text())["run"]
    return "finished here" if records.same_run(done, run.to_json()) else "stale"
  if root and records.find(run.to_json(), records.record_dir(root, workdir)):
    return "recorded"
  return "started" if steps_left(run, workdir) != planned_steps(run) else "to train"


def config_changes(run: Run, workdir: pathlib.Path) -> str:
  """'' or '; its config file now differs at FIELD (ran A, now B), ...': the fields of the
  stages it runs where the config that trained the run in workdir (its config.json) and its
  config file today differ, less those that every stage's method ignores (Method.ignores). A
  finished run is matched to its Run by name, config argument and overrides, so an edit of the
  config file itself does not retrain it: this says so."""
  path = workdir / "config.json"
  if not path.is_file():
    return ""
  cfg = run_config(run)
  unused = tuple(f"pipeline.stages.{s}." for s in cfg.pipeline.stages if s not in stage_names(cfg))
  ignored = [method_of(stage_config(cfg, s, "")).ignores for s in stage_names(cfg)]
  ignored = ignored or [method_of(cfg).ignores]
  changes = changed_fields(json.loads(path.read_text()), cfg)
  shown = [
    f"{k} (ran {a!r}, now {b!r})"
    for k, (a, b) in changes.items()
    if not k.startswith(unused) and not all(k.startswith(i) for i in ignored)
  ]
  return f"; its config file now differs at {', '.join(shown)}" if shown else ""


def stale_rates(run: Run, notes: dict) -> str:
  """'' or '; its idle rate of STAGE, ... was measured for another config': the stages whose
  rate experiments/bench/rates.py took for a stage config of other cost fields
  (reporting.cost_fingerprint) than the run's config file gives today. Rates measured before
  fingerprints were recorded are not judged."""
  cfg = run_config(run)
  stale = [
    stage
    for stage in stage_names(cfg)
    if notes.get(reporting.rate_key(run.name, stage), {}).get("config")
    not in (None, reporting.cost_fingerprint(stage_config(cfg, stage, "")))
  ]
  if not stale:
    return ""
  return (
    f"; its idle rate of {', '.join(stale)} was measured for another config "
    "(experiments/bench/rates.py re-measures it)"
  )


def list_runs(plan: list, root: pathlib.Path | None, log=print) -> None:
  """One line per (Run, workdir) of `plan`: its state (`run_state`) and its wall-clock at the
  idle rates (of the updates it took where it finished here, of those left where it has
  started), with the fields its config file changed since it ran (`config_changes`) and the
  stages whose rate is stale (`stale_rates`); then the idle hours left to train: what decides
  whether a machine can finish a study in one session."""
  rates, notes, left = reporting.load_rates(), reporting.load_rate_notes(), []
  for run, workdir in plan:
    state, idle = run_state(run, workdir, root), planned_idle_wall(run, rates)
    changes = stale_rates(run, notes)
    if state == "finished here":
      idle = reporting.idle_wall(json.loads((workdir / "result.json").read_text()), rates)
      changes = config_changes(run, workdir) + changes
    if state == "started":
      todo = steps_left(run, workdir)
      idle = reporting.idle_wall({"run": run.to_json(), "stages": todo}, rates)
      stage = next(s for s, t in todo.items() if t["steps"] or s == list(todo)[-1])
      planned = planned_steps(run)[stage]["steps"]
      state = f"started: {stage} {planned - todo[stage]['steps']}/{planned}"
    idle_text = "—" if idle is None else f"{idle:.0f} s idle"
    log(f"  {run.name:<44} {state:<26} {idle_text}{changes}")
    if state == "to train" or state == "stale" or state.startswith("started"):
      left.append(idle)
  unmeasured = sum(v is None for v in left)
  hours = sum(v for v in left if v is not None) / 3600
  log(
    f"  {len(left)} of {len(plan)} to train: {hours:.1f} h at idle rates"
    + (f" (and {unmeasured} without measured rates)" if unmeasured else "")
  )


def is_finished(run: Run, workdir: pathlib.Path, log) -> bool:
  """Whether workdir holds this run's result (a stale result of another config is removed)."""
  if not (workdir / "result.json").is_file():
    return False
  done = json.loads((workdir / "result.json").read_text())["run"]
  if records.same_run(done, run.to_json()):
    return True
  log(f"[redo] {run.name}: its config changed since result.json was written")
  shutil.rmtree(workdir)
  return False


def execute(todo: list, jobs: int = 1, log=print, conclude: bool = False) -> list:
  """Runs every (Run, workdir) pair of `todo` (skipping finished ones and repeats of a workdir)
  with at most `jobs` at once; returns the results in the order of `todo`. A failed run is
  reported and left out of the results. conclude: end each run at its newest checkpoint instead
  of training on (`concluded_config`)."""
  pending, running, failed, seen = [], {}, [], set()
  for run, workdir in todo:
    if workdir not in seen and not is_finished(run, workdir, log):
      pending.append((run, workdir))
    seen.add(workdir)
  while pending or running:
    while pending and len(running) < jobs:
      run, workdir = pending.pop(0)
      workdir.mkdir(parents=True, exist_ok=True)
      spec = workdir / "run.json"
      job = {"run": run.to_json(), "workdir": str(workdir), "conclude": conclude}
      spec.write_text(json.dumps(job, indent=1))
      logf = open(workdir / "log.txt", "w")
      cmd = [sys.executable, "-m", "experiments.repro.runner", "--worker", str(spec)]
      running[workdir] = (
        run.name,
        subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT),
        logf,
        time.time(),
      )
      log(f"[start] {run.name} ({len(pending)} queued)")
    for workdir, (name, proc, logf, t0) in list(running.items()):
      if proc.poll() is not None:
        logf.close()
        del running[workdir]
        ok = proc.returncode == 0
        log(f"[{'done' if ok else 'FAILED'}] {name} ({time.time() - t0:.0f} s)")
        if not ok:
          failed.append(str(workdir))
    time.sleep(0.5)
  if failed:
    log(f"failed runs (see their log.txt): {', '.join(failed)}")
  return collect(todo)


def collect(todo: list, root: pathlib.Path | None = None) -> list:
  """The results of the finished (Run, workdir) pairs of `todo`, labelled with each Run's tags:
  from the run folder (wherever it has moved since), else (with a records `root`) from the run's
  record of the same config."""
  out = []
  for run, workdir in todo:
    if (workdir / "result.json").is_file():
      result = json.loads((workdir / "result.json").read_text())
      out.append({**result, "workdir": str(workdir), "run": run.to_json()})
    elif root and (found := records.find(run.to_json(), records.record_dir(root, workdir))):
      out.append({**found, "run": run.to_json()})
  return out


def recorded_elsewhere(run: Run, workdir: pathlib.Path, root: pathlib.Path | None, log) -> bool:
  """Whether the run has no folder here but a record of the same config under `root`: it
  finished on another machine and is not trained again."""
  if run_state(run, workdir, root) != "recorded":
    return False
  record = records.record_dir(root, workdir)
  log(f"[recorded] {run.name}: finished elsewhere ({record}); delete the record to train it here")
  return True


def parse_args(description: str, argv=None, parents=()) -> argparse.Namespace:
  """The flags shared by every study driver and run_all, plus those of `parents` (argparse
  parsers made with add_help=False)."""
  p = argparse.ArgumentParser(description=description, parents=list(parents))
  p.add_argument(
    "--quick",
    action="store_true",
    help="reduced budgets: a check of the whole pipeline in minutes, not a result",
  )
  p.add_argument("--out", default=str(REPO / "workdirs" / "repro"), help="results folder")
  p.add_argument("--jobs", type=int, default=1, help="training processes at once")
  p.add_argument("--seeds", type=int, default=0, help="seeds per cell; 0 = the study's default")
  p.add_argument(
    "--doc",
    default=str(reporting.DEFAULT_DOC),
    help="Markdown file whose section of each "
    "study is replaced; '' = write only OUT/STUDY/report.md",
  )
  p.add_argument(
    "--runs",
    default="",
    help="train only the runs whose name matches this regular expression (e.g. 'T64_'); the "
    "report covers every finished run",
  )
  p.add_argument(
    "--report_only",
    action="store_true",
    help="train nothing: write the reports "
    "from the runs already finished (e.g. after editing a study's report)",
  )
  p.add_argument(
    "--list",
    action="store_true",
    help="train nothing: list each run as finished here, recorded, started (at which stage "
    "and update it resumes) or to train, with the wall-clock it still needs at the idle rates "
    "of experiments/bench/results/rates_cpu.json",
  )
  p.add_argument(
    "--conclude",
    action="store_true",
    help="train nothing more: end each run that --runs selects at its last stage's newest "
    "checkpoint, evaluate it there and record it with the updates it took beside its cap (its "
    "tables mark it stopped; delete its result.json to train it on)",
  )
  p.add_argument(
    "--records",
    default=None,
    help="folder of the runs' records in git (experiments/repro/records.py): read where a run "
    "folder is gone, written after the reports; default docs/results/records for full-size runs, "
    "none for --quick; '' = none",
  )
  return p.parse_args(argv)


def run_studies(studies: list, argv: list, script: str, parents=()) -> list:
  """Validates the runs of `studies` that --runs selects (none with --report_only), trains them
  in one queue (--jobs at once; runs shared by studies once), then writes each study's report
  from every finished run. Returns the reports' paths. `parents`: the caller's own flags
  (parse_args). A run that fails validation raises ConfigError before anything trains. With a
  records root (--records), runs recorded there are not trained again, reports read them where
  their folders are gone, and every finished run folder is recorded after the reports (which
  fill its report cache)."""
  args = parse_args("; ".join(f"{s.title}. {s.claim}" for s in studies), argv, parents)
  root = records.root(args.quick, args.records)
  plans = {}
  for study in studies:
    runs_dir = pathlib.Path(args.out) / study.runs_folder(args.quick) / "runs"
    plans[study.name] = [(run, runs_dir / run.name) for run in study.runs(args.quick, args.seeds)]
  if args.list:
    for study in studies:
      print(f"{study.title}:")
      list_runs([(r, wd) for r, wd in plans[study.name] if re.search(args.runs, r.name)], root)
    return []
  todo = [] if args.report_only else [item for plan in plans.values() for item in plan]
  todo = [(run, wd) for run, wd in todo if re.search(args.runs, run.name)]
  todo = [(run, wd) for run, wd in todo if not recorded_elsewhere(run, wd, root, print)]
  for run, workdir in todo:
    validate_run(run)
    if args.conclude and not (workdir / "result.json").is_file():
      concluded_config(run, workdir)  # Refuses a run with nothing to end at, before any runs.
  start = time.time()
  execute(todo, args.jobs, conclude=args.conclude)
  elapsed = time.time() - start
  command = " ".join(["python", script] + [a for a in argv if a != "--report_only"])
  reports = [
    reporting.write_report(
      study, args, command, collect(plans[study.name], root), len(plans[study.name]), elapsed
    )
    for study in studies
  ]
  if root:
    finished = {wd for plan in plans.values() for _, wd in plan if (wd / "result.json").is_file()}
    for workdir in sorted(finished):
      records.save(workdir, records.record_dir(root, workdir))
  return reports


def main(study: Study, argv=None) -> pathlib.Path | None:
  """The command line of one study's driver; returns the report's path (None with --list)."""
  argv = sys.argv[1:] if argv is None else argv
  with one_line_errors():
    reports = run_studies([study], argv, f"experiments/repro/{study.name}.py")
  return reports[0] if reports else None  # None: --list wrote no report.


@contextlib.contextmanager
def one_line_errors():
  """A study driver's bad input (a run's config, data not prepared) ends the process with one
  line on stderr and status 1, before anything trains, not with a traceback."""
  try:
    yield
  except ConfigError as e:
    raise SystemExit(f"error: {one_line(e)}") from None


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == "--worker":
    run_worker(sys.argv[2])
  else:
    sys.exit("runner.py runs studies; run one, e.g. python experiments/repro/credit.py")
