"""The shared framework of the reproduction studies (experiments/repro/STUDY.py).

A study is a list of `Run`s (a config file, dotted overrides, a seed, tags for the tables) and a
`report` function that turns their results into a Markdown section. `main(study)` gives every
study the same command line:

  python experiments/repro/STUDY.py [--quick] [--out DIR] [--jobs N] [--doc PATH] [--seeds N]
                                    [--report_only]

Each run trains through `smt_jax.train.pipeline.run_pipeline` (or `train_and_evaluate` for a
single stage) in its own subprocess, into OUT/POOL/runs/NAME, and leaves result.json there; a
re-run skips runs whose result.json exists with the same config (delete it to redo one). Studies
that share a pool share the runs they have in common (same name, config, seed and measures), so
e.g. the length study reads the state study's SMT -> DMT runs instead of training them again.
The report goes to OUT/STUDY/report.md with its plots beside it, and, unless --doc '', replaces
this study's section of docs/results.md (plots copied to docs/results/).
"""

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from typing import Callable

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = REPO / "experiments" / "configs"
DEFAULT_DOC = REPO / "docs" / "results.md"


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
  report: Callable[[list, "Report"], str]  # (results, report helper) -> Markdown body
  pool: str = ""  # Folder of its runs, shared with the studies naming the same pool; "" = name.

  def folder(self, quick: bool) -> str:
    """Folder of this study's report (under OUT)."""
    return self.name + ("_quick" if quick else "")

  def runs_folder(self, quick: bool) -> str:
    """Folder of this study's runs (under OUT): its pool's."""
    return (self.pool or self.name) + ("_quick" if quick else "")


# ----------------------------------------------------------------------------------- configs

def load_config(name: str):
  """get_config() of experiments/configs/NAME[.py][:ARG] (ARG passed to get_config, as
  --config=FILE:ARG does for experiments/run.py)."""
  name, _, arg = name.partition(":")
  path = CONFIGS / (name if name.endswith(".py") else f"{name}.py")
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def apply_overrides(cfg, overrides: dict):
  """Sets each "dotted.field" of cfg (new keys allowed only under kwargs / pipeline.stages)."""
  import ml_collections
  for dotted, value in overrides.items():
    *groups, leaf = dotted.split(".")
    node = cfg
    for i, group in enumerate(groups):
      if group not in node:
        if not ({"kwargs", "stages"} & set(groups[:i + 1]) or groups[:1] == ["pipeline"]):
          raise KeyError(f"override {dotted!r}: no group {group!r} in the config")
        node[group] = ml_collections.ConfigDict()
      node = node[group]
    if leaf not in node and not ({"kwargs", "stages"} & set(groups)):
      raise KeyError(f"override {dotted!r}: no field {leaf!r} in the config")
    node[leaf] = value
  return cfg


def run_config(run: Run):
  """The full (pipeline) config of a run."""
  cfg = load_config(run.config)
  cfg = apply_overrides(cfg, run.overrides)
  cfg.seed = run.seed
  cfg.log.progress = False
  return cfg


def validate_run(run: Run) -> None:
  """Validates every stage of a run's config (raises smt_jax.config.ConfigError)."""
  from smt_jax.config import validate
  from smt_jax.train.pipeline import stage_config, stage_names
  cfg = run_config(run)
  names = stage_names(cfg)
  if not names:
    validate(cfg)
  for s in names:
    stage = stage_config(cfg, s, "/nonexistent")
    validate(stage, init_from_pending=stage.ckpt.init_from.startswith("/nonexistent"))


# ----------------------------------------------------------------------------------- measures

def memory_spread(cfg, workdir: str, num: int = 64) -> dict:
  """How much of the memory space the encoder's and the RNN's memories use, on test sequences.

  For memories m (N, Z) from `num` sequences at every position: participation ratio of the
  covariance spectrum (effective dimensions, 1 = collapsed onto a line, Z = isotropic), mean
  per-feature standard deviation, and mean cosine similarity between memories of different
  sequences at the same position (1 = every sequence has the same memory). Encoder memories are
  those of the Tc-windows; RNN memories those of the RNN reading from the encoder memory at
  position 0 (the trainer's read for smt/dmt) or from its initial memory (bptt).
  """
  import jax
  import jax.numpy as jnp
  import numpy as np

  from smt_jax.data import make_dataset
  from smt_jax.eval.read import rnn_memories
  from smt_jax.models import build_models
  from smt_jax.objectives.windows import encoder_memories
  from smt_jax.train.checkpointing import load_params
  from smt_jax.train.step import eval_prefix

  params, _ = load_params(workdir)
  models = build_models(cfg)
  batch = make_dataset(cfg.data, "test").sample(jax.random.key(1234), num, cfg.data.T)
  x = batch["x"]

  def stats(m):  # (B, T, Z)
    m = np.asarray(m, np.float64)
    flat = m.reshape(-1, m.shape[-1])
    eig = np.clip(np.linalg.eigvalsh(np.cov(flat.T)), 0, None)
    pr = float(eig.sum() ** 2 / max((eig ** 2).sum(), 1e-30))
    unit = m / (np.linalg.norm(m, axis=-1, keepdims=True) + 1e-8)
    cos = np.einsum("btz,ctz->tbc", unit, unit)
    off = (cos.sum(axis=(1, 2)) - np.trace(cos, axis1=1, axis2=2)) / (num * (num - 1))
    return {"eff_dim": pr, "feature_std": float(flat.std(0).mean()), "cross_cos": float(off.mean())}

  out = {}
  if cfg.method != "bptt":
    t = jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape)
    out["encoder"] = stats(jax.jit(lambda p: encoder_memories(models, p, x, t))(params))
  prefix = eval_prefix(cfg)
  out["rnn"] = stats(jax.jit(lambda p: rnn_memories(models, p, x, prefix))(params))
  return out


def length_generalisation(cfg, workdir: str, factors=(1, 2, 4), num: int = 64) -> dict:
  """Accuracy of the RNN (read as the trainer reads it: from the encoder memory of x[0] after
  SMT / DMT, from its initial memory after BPTT) and of the teacher (re-encoding its Tc-window
  at every position) on test sequences of length factor * T."""
  import jax

  from smt_jax.data import make_dataset
  from smt_jax.eval.read import rnn_read_stats, summarize, teacher_read_stats
  from smt_jax.models import build_models
  from smt_jax.train.checkpointing import load_params
  from smt_jax.train.step import eval_prefix, readout_from_decoder

  params, _ = load_params(workdir)
  if cfg.method == "smt" and cfg.model.rnn.readout_from_decoder:
    params = readout_from_decoder(params)
  models = build_models(cfg)
  ds = make_dataset(cfg.data, "test")
  prefix = eval_prefix(cfg)
  rnn = jax.jit(lambda p, b: rnn_read_stats(models, p, b, prefix))
  teacher = jax.jit(lambda p, b: teacher_read_stats(models, p, b, 256))
  out = {"lengths": [], "rnn_acc": [], "teacher_acc": []}
  for f in factors:
    length = f * cfg.data.T
    batch = ds.sample(jax.random.key(4321 + f), num, length)
    out["lengths"].append(length)
    out["rnn_acc"].append(summarize(rnn(params, batch))["acc"])
    if cfg.method != "bptt":
      out["teacher_acc"].append(summarize(teacher(params, batch))["acc"])
  return out


def read_from_start(cfg, workdir: str, num: int = 128) -> dict:
  """The RNN's accuracy and loss when it reads the whole sequence itself: from the encoder memory
  of x[0] (smt, dmt) or from its initial memory (bptt), whatever train.eval_prefix says."""
  import jax

  from smt_jax.data import make_dataset
  from smt_jax.eval.read import rnn_read_stats, summarize
  from smt_jax.models import build_models
  from smt_jax.train.checkpointing import load_params
  from smt_jax.train.step import readout_from_decoder

  params, _ = load_params(workdir)
  if cfg.method == "smt" and cfg.model.rnn.readout_from_decoder:
    params = readout_from_decoder(params)
  models = build_models(cfg)
  prefix = 0 if cfg.method == "bptt" else 1
  batch = make_dataset(cfg.data, "test").sample(jax.random.key(999), num, cfg.data.T)
  s = summarize(jax.jit(lambda p, b: rnn_read_stats(models, p, b, prefix))(params, batch))
  return {"prefix": prefix, "acc": s["acc"], "loss": s["loss"]}


MEASURES = {"spread": memory_spread, "length": length_generalisation, "start": read_from_start}


# ----------------------------------------------------------------------------------- running

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
    out["lengths"] = ev["length"]["lengths"]
    out["length_rnn_acc"] = ev["length"].get("rnn_acc")
    out["length_teacher_acc"] = ev["length"].get("teacher_acc")
  if "read" in ev:
    out["read"] = {name: {"acc": c["acc"], "loss": c["loss"]}
                   for name, c in ev["read"]["curves"].items()}
  return out


def run_worker(spec_path: str) -> None:
  """Subprocess body: trains one Run into its folder and writes result.json."""
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  from smt_jax.train.loop import train_and_evaluate
  from smt_jax.train.pipeline import run_pipeline, stage_config, stage_names

  spec = json.loads(pathlib.Path(spec_path).read_text())
  run, workdir = Run(**spec["run"]), pathlib.Path(spec["workdir"])
  cfg = run_config(run)
  start = time.time()
  names = stage_names(cfg)
  if names:
    rows = run_pipeline(cfg, workdir)
    configs = {s: stage_config(cfg, s, workdir) for s in names}
  else:
    final = train_and_evaluate(cfg, workdir / cfg.method)
    names, configs = [cfg.method], {cfg.method: cfg}
    rows = [{"stage": cfg.method, "method": cfg.method, "rnn_acc": final["rnn_acc"],
             "rnn_loss": final["rnn_loss"], "teacher_acc": final.get("teacher_acc"),
             "wall_s": final["wall_s"], "workdir": str(workdir / cfg.method)}]
  stages = {}
  for row in rows:
    s = row["stage"]
    stages[s] = {k: row[k] for k in ("method", "rnn_acc", "rnn_loss", "teacher_acc", "wall_s")}
    stages[s]["steps"] = int(configs[s].train.num_steps)
    stages[s]["batch_size"] = int(configs[s].train.batch_size)
    stages[s].update(_final_eval_extract(pathlib.Path(row["workdir"]) / "eval.json"))
  for measure, stage in run.measure.items():
    stages[stage][measure] = MEASURES[measure](configs[stage], str(workdir / stage))
  result = {"run": run.to_json(), "stages": stages, "wall_s": time.time() - start,
            "workdir": str(workdir)}
  (workdir / "result.json").write_text(json.dumps(result, indent=1, default=float) + "\n")


def is_finished(run: Run, workdir: pathlib.Path, log) -> bool:
  """Whether workdir holds this run's result (a stale result of another config is removed)."""
  if not (workdir / "result.json").is_file():
    return False
  done = json.loads((workdir / "result.json").read_text())["run"]
  if all(done.get(k) == v for k, v in run.to_json().items() if k != "tags"):
    return True  # Tags are only labels: a run shared by studies may carry either study's.
  log(f"[redo] {run.name}: its config changed since result.json was written")
  shutil.rmtree(workdir)
  return False


def execute(todo: list, jobs: int = 1, log=print) -> list:
  """Runs every (Run, workdir) pair of `todo` (skipping finished ones and repeats of a workdir)
  with at most `jobs` at once; returns the results in the order of `todo`. A failed run is
  reported and left out of the results."""
  pending, running, failed, seen = [], {}, [], set()
  for run, workdir in todo:
    if workdir not in seen and not is_finished(run, workdir, log):
      pending.append((run, workdir))
    seen.add(workdir)
  env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  while pending or running:
    while pending and len(running) < jobs:
      run, workdir = pending.pop(0)
      workdir.mkdir(parents=True, exist_ok=True)
      spec = workdir / "run.json"
      spec.write_text(json.dumps({"run": run.to_json(), "workdir": str(workdir)}, indent=1))
      logf = open(workdir / "log.txt", "w")
      cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", str(spec)]
      running[workdir] = (run.name, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                                      env=env), logf, time.time())
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


def collect(todo: list) -> list:
  """The results of the finished (Run, workdir) pairs of `todo`, labelled with each Run's tags."""
  return [{**json.loads((workdir / "result.json").read_text()), "run": run.to_json()}
          for run, workdir in todo if (workdir / "result.json").is_file()]


# ----------------------------------------------------------------------------------- reporting

def mean_std(values: list) -> str:
  """'0.812 ± 0.030 (n=3)' of the finite values; '—' when there are none."""
  vals = [v for v in values if v is not None and math.isfinite(v)]
  if not vals:
    return "—"
  mean = sum(vals) / len(vals)
  if len(vals) == 1:
    return f"{mean:.3f}"
  std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
  return f"{mean:.3f} ± {std:.3f}"


def mean_of(values: list):
  vals = [v for v in values if v is not None and math.isfinite(v)]
  return sum(vals) / len(vals) if vals else float("nan")


def md_table(headers: list, rows: list) -> str:
  lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
  return "\n".join(lines)


def group(results: list, *keys) -> dict:
  """{tuple of tag values: [results]} in first-seen order."""
  out = {}
  for r in results:
    out.setdefault(tuple(r["run"]["tags"].get(k) for k in keys), []).append(r)
  return out


def final(result: dict, metric: str = "rnn_acc"):
  """A metric of the last stage of a run (the RNN the pipeline ends with)."""
  return list(result["stages"].values())[-1].get(metric)


def stage_metric(result: dict, stage: str, metric: str):
  return result["stages"].get(stage, {}).get(metric)


def run_wall(result: dict) -> float:
  """Training + evaluation wall-clock of all stages of a run."""
  return sum(s["wall_s"] for s in result["stages"].values())


def run_steps(result: dict) -> int:
  return sum(s["steps"] for s in result["stages"].values())


class Report:
  """Helpers handed to a study's report function: where plots go, and plotting."""

  def __init__(self, study: Study, out: pathlib.Path, quick: bool):
    self.study, self.out, self.quick = study, out, quick
    self.plots = []

  def line_plot(self, filename: str, xs: list, series: dict, xlabel: str, ylabel: str,
                title: str = "", logx: bool = False, chance: float = None) -> str:
    """series {label: [(x, [values over seeds]), ...]}: mean with min-max band; `chance` draws a
    dashed line at that value. Returns a Markdown image link (relative to the report)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, points in series.items():
      px = [x for x, v in points if v]
      mean = [mean_of(v) for _, v in points if v]
      lo = [min(v) for _, v in points if v]
      hi = [max(v) for _, v in points if v]
      line, = ax.plot(px, mean, marker="o", label=label)
      ax.fill_between(px, lo, hi, color=line.get_color(), alpha=0.15)
    if chance is not None:
      ax.axhline(chance, color="gray", linestyle="--", linewidth=1, label="chance")
    if logx:
      ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or self.study.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(self.out / filename, dpi=110)
    plt.close(fig)
    self.plots.append(filename)
    return f"![{ylabel}]({filename})"


def commit_hash() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def write_section(doc: pathlib.Path, name: str, text: str) -> None:
  """Replaces (or appends) the section between <!-- repro:NAME --> markers in doc."""
  begin, end = f"<!-- repro:{name} begin -->", f"<!-- repro:{name} end -->"
  block = f"{begin}\n{text.rstrip()}\n{end}"
  current = doc.read_text() if doc.is_file() else "# Results\n"
  pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
  if pattern.search(current):
    current = pattern.sub(lambda _: block, current)
  else:
    current = current.rstrip() + "\n\n" + block + "\n"
  doc.parent.mkdir(parents=True, exist_ok=True)
  doc.write_text(current if current.endswith("\n") else current + "\n")


def parse_args(description: str, argv=None) -> argparse.Namespace:
  """The flags shared by every study driver and run_all."""
  p = argparse.ArgumentParser(description=description)
  p.add_argument("--quick", action="store_true", help="reduced sizes (about 10 minutes for all "
                 "studies on 2 CPU cores)")
  p.add_argument("--out", default=str(REPO / "workdirs" / "repro"), help="results folder")
  p.add_argument("--jobs", type=int, default=1, help="training processes at once")
  p.add_argument("--seeds", type=int, default=0, help="seeds per cell; 0 = the study's default")
  p.add_argument("--doc", default=str(DEFAULT_DOC), help="Markdown file whose section of each "
                 "study is replaced; '' = write only OUT/STUDY/report.md")
  p.add_argument("--report_only", action="store_true", help="train nothing: write the reports "
                 "from the runs already finished (e.g. after editing a study's report)")
  return p.parse_args(argv)


def write_report(study: Study, args: argparse.Namespace, command: str, results: list,
                 num_runs: int, elapsed: float) -> pathlib.Path:
  """Writes OUT/STUDY/report.md and results.json, and the study's section of --doc."""
  out = pathlib.Path(args.out) / study.folder(args.quick)
  out.mkdir(parents=True, exist_ok=True)
  rep = Report(study, out, args.quick)
  body = study.report(results, rep)
  seeds = sorted({r["run"]["seed"] for r in results})
  total_wall = sum(r["wall_s"] for r in results)
  mode = "QUICK-MODE (reduced sizes; not the full study)" if args.quick else "full size"
  runs_dir = pathlib.Path(args.out) / study.runs_folder(args.quick) / "runs"
  invocation = ("report re-written with --report_only" if args.report_only else
                f"this invocation: {elapsed / 60:.1f} min, --jobs {args.jobs}")
  header = (f"## {study.title}\n\n"
            f"**Claim (paper):** {study.claim}\n\n"
            f"- mode: **{mode}**\n"
            f"- command: `{command}`\n"
            f"- runs: {len(results)}/{num_runs} finished; seeds {seeds}; summed run wall-clock "
            f"{total_wall / 60:.1f} min ({invocation}); commit {commit_hash()}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- per-run folders: `{runs_dir}/NAME` (config.json, metrics.jsonl, eval.json per "
            "stage)\n\n")
  text = header + body
  (out / "report.md").write_text(text + "\n")
  (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
  if args.doc:
    doc = pathlib.Path(args.doc)
    plot_dir = doc.parent / "results"
    plot_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"{study.folder(args.quick)}_"
    for f in rep.plots:
      shutil.copy(out / f, plot_dir / (prefix + f))
      text = text.replace(f"]({f})", f"](results/{prefix}{f})")
    write_section(doc, study.folder(args.quick), text)
  print(text)
  return out / "report.md"


def run_studies(studies: list, argv: list, script: str) -> list:
  """Validates every run of `studies`, trains them all in one queue (--jobs at once; runs shared
  by studies once), then writes each study's report. Returns the reports' paths."""
  args = parse_args("; ".join(f"{s.title}. {s.claim}" for s in studies), argv)
  plans = {}
  for study in studies:
    runs = study.runs(args.quick, args.seeds)
    for run in runs:
      validate_run(run)
    runs_dir = pathlib.Path(args.out) / study.runs_folder(args.quick) / "runs"
    plans[study.name] = [(run, runs_dir / run.name) for run in runs]
  start = time.time()
  if not args.report_only:
    execute([item for plan in plans.values() for item in plan], args.jobs)
  elapsed = time.time() - start
  command = " ".join(["python", script] + [a for a in argv if a != "--report_only"])
  return [write_report(study, args, command, collect(plans[study.name]),
                       len(plans[study.name]), elapsed) for study in studies]


def main(study: Study, argv=None) -> pathlib.Path:
  """The command line of one study's driver; returns the report's path."""
  argv = sys.argv[1:] if argv is None else argv
  return run_studies([study], argv, f"experiments/repro/{study.name}.py")[0]


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == "--worker":
    sys.path.insert(0, str(REPO))
    run_worker(sys.argv[2])
  else:
    sys.exit("common.py is the shared framework; run a study, e.g. experiments/repro/credit.py")
