"""Reporting the reproduction studies: table and plot helpers, and the report writer.

The report of a study goes to OUT/STUDY/report.md with its plots beside it, and, unless --doc
'', replaces this study's section of docs/results.md (plots copied to docs/results/).
"""

import argparse
import hashlib
import json
import math
import pathlib
import re
import shutil
import subprocess
import time

from experiments.repro import records
from smt_jax.config import flatten
from smt_jax.eval.suite import load_run_config
from smt_jax.objectives import gradient_path_length, method_of

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_DOC = REPO / "docs" / "results.md"


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


def read_from(result: dict, stage: str | None = None) -> str:
  """Where the RNN read of `stage` (default: the run's last) starts ("x[0] (m_empty)" or
  "x[0] (init)")."""
  stages = result["stages"]
  return (stages[stage] if stage else list(stages.values())[-1]).get("rnn_read_from") or "—"


def gradient_path(result: dict) -> str:
  """The most updater applications one gradient crosses in each stage of a run
  (smt_jax.objectives.gradient_path_length of the config the stage saved, at its T): "64" for a
  one-stage run, "SMT 1; DMT 64" for several."""
  paths = {}
  for stage in result["stages"]:
    cfg = load_run_config(str(pathlib.Path(result["workdir"]) / stage))
    paths[stage] = gradient_path_length(cfg, cfg.data.T)
  if len(paths) == 1:
    return str(*paths.values())
  return "; ".join(f"{stage.upper()} {n}" for stage, n in paths.items())


def stage_metric(result: dict, stage: str, metric: str):
  return result["stages"].get(stage, {}).get(metric)


def teacher_metric(result: dict, metric: str):
  """A metric of a run's last SMT stage (its final teacher), None without one."""
  smt = [s for s in result["stages"].values() if s.get("method") == "smt"]
  return smt[-1].get(metric) if smt else None


def finetune_verdict(tuned: float, bptt: float, teacher: float) -> str:
  """Whether SMT -> DMT fine-tuned by BPTT (accuracy `tuned`) beats BPTT from scratch and the
  teacher, by more than 0.02."""
  return (
    f"Fine-tuned by BPTT, the SMT→DMT RNN reaches {tuned:.3f}: "
    + ("above" if tuned > bptt + 0.02 else "not above")
    + f" BPTT from scratch ({bptt:.3f}), and "
    + ("above" if tuned > teacher + 0.02 else "not above")
    + f" the teacher ({teacher:.3f})."
  )


STREAM_TOLERANCE = 0.05  # The stream teacher and its RNN must be within this of the window's.


def stream_window_verdict(acc: dict, teacher: dict) -> str:
  """Stream vs window teacher: `acc` and `teacher` map "stream" and "window" to the RNN's
  accuracy from x[0] and the teacher's; within STREAM_TOLERANCE or better on both?"""
  ok = all(d["stream"] >= d["window"] - STREAM_TOLERANCE for d in (acc, teacher))
  return (
    f"stream vs window teacher: RNN from x[0] {acc['stream']:.3f} vs {acc['window']:.3f}, "
    f"teacher {teacher['stream']:.3f} vs {teacher['window']:.3f} — "
    + (
      f"within {STREAM_TOLERANCE} or better (the streaming teacher's target met)"
      if ok
      else f"more than {STREAM_TOLERANCE} below (the streaming teacher's target not met)"
    )
  )


def run_wall(result: dict) -> float:
  """Training + evaluation wall-clock of all stages of a run."""
  return sum(s["wall_s"] for s in result["stages"].values())


def rates_path(backend: str = "cpu") -> pathlib.Path:
  """Where experiments/bench/rates.py writes the idle updates/s of the studies' stages."""
  return REPO / "experiments" / "bench" / "results" / f"rates_{backend}.json"


def rate_key(run_name: str, stage: str) -> str:
  """("T64_mlp_bptt_s2", "bptt") -> "T64_mlp_bptt/bptt": a run's seed does not change a rate."""
  return f"{re.sub(r'_s[0-9]+$', '', run_name)}/{stage}"


def load_rates(backend: str = "cpu") -> dict:
  """{rate_key: updates/s} measured by experiments/bench/rates.py ({} where not measured)."""
  path = rates_path(backend)
  return json.loads(path.read_text())["rates"] if path.is_file() else {}


def load_rate_notes(backend: str = "cpu") -> dict:
  """{rate_key: {"utc", "load_before", "load_after", "commit"[, "config"]}}: when and for which
  stage config (`cost_fingerprint`) experiments/bench/rates.py measured each rate."""
  path = rates_path(backend)
  return json.loads(path.read_text())["measured"] if path.is_file() else {}


# The config fields that decide what one update computes. Learning rates, caps, evaluation,
# checkpoints and logging do not, so a rate measured before one of those changed still holds.
COST_FIELDS = (
  "method",
  "model.",
  "data.T",
  "data.name",
  "data.vocab_size",
  "data.kwargs.",
  "smt.",
  "dmt.",
  "bptt.",
  "newton.",
  "mesh.",
  "train.batch_size",
  "train.grad_accum",
  "train.trainable",
)


def cost_fingerprint(cfg) -> str:
  """12 hex digits of a hash of a stage config's COST_FIELDS values, less those its method
  ignores (Method.ignores): two stage configs whose fingerprints are equal run the same update,
  so they share an idle rate."""
  fields = flatten(json.loads(cfg.to_json_best_effort()))
  ignored = method_of(cfg).ignores
  chosen = {
    k: v for k, v in fields.items() if k.startswith(COST_FIELDS) and not k.startswith(ignored)
  }
  text = json.dumps(chosen, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def idle_wall(result: dict, rates: dict):
  """A run's training wall-clock at the idle rates: the sum over its stages of updates / rate
  (None where a stage's rate was not measured)."""
  name = result["run"]["name"]
  keys = [rate_key(name, s) for s in result["stages"]]
  if not all(k in rates for k in keys):
    return None
  return sum(s["steps"] / rates[k] for s, k in zip(result["stages"].values(), keys))


def seconds(v) -> str:
  """'1234' (whole seconds); '—' for None."""
  return "—" if v is None else f"{v:.0f}"


def run_steps(result: dict) -> int:
  """Updates a run took over all its stages."""
  return sum(s["steps"] for s in result["stages"].values())


def run_cap(result: dict) -> int:
  """Updates a run was allowed over all its stages (runs recorded before caps were: those taken)."""
  return sum(s.get("cap", s["steps"]) for s in result["stages"].values())


def stopped_short(result: dict) -> bool:
  """Whether the run was ended by hand (runner --conclude) before its cap, its budget unused."""
  return any(s.get("concluded", False) for s in result["stages"].values())


def updates_cell(result: dict) -> str:
  """'2300 (5000)': updates taken (cap); 'stopped' added where the run was ended by hand."""
  stopped = ", stopped" if stopped_short(result) else ""
  return f"{run_steps(result)} ({run_cap(result)}{stopped})"


class Report:
  """Helpers handed to a study's report function: where plots go, and plotting."""

  def __init__(self, study, out: pathlib.Path, quick: bool):
    self.study, self.out, self.quick = study, out, quick
    self.plots = []

  def line_plot(
    self,
    filename: str,
    xs: list,
    series: dict,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    chance: float = None,
  ) -> str:
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
      (line,) = ax.plot(px, mean, marker="o", label=label)
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

  def curves_plot(
    self, filename: str, curves: dict, xlabel: str, ylabel: str, title: str, chance=None
  ) -> str:
    """curves {label: (xs, ys, linestyle)}, None in ys leaves a gap; `chance` draws a dashed
    gray line. Returns a Markdown image link (relative to the report)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, (xs, ys, style) in curves.items():
      ax.plot(xs, [float("nan") if v is None else v for v in ys], style, label=label, lw=1.4)
    if chance is not None:
      ax.axhline(chance, color="gray", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(self.out / filename, dpi=110)
    plt.close(fig)
    self.plots.append(filename)
    return f"![{ylabel}]({filename})"

  def image(self, filename: str, source: pathlib.Path, caption: str) -> str:
    """Copies an image that a run drew (e.g. its samples.png) beside the report as `filename`,
    so that it travels with the plots. Returns a Markdown image link (relative to the report)."""
    shutil.copy(source, self.out / filename)
    self.plots.append(filename)
    return f"![{caption}]({filename})"


def commit_hash() -> str:
  try:
    return subprocess.run(
      ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def _shown(path: pathlib.Path) -> str:
  """`path` relative to the repository where it lies inside it."""
  path = path.resolve()
  return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


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


def write_report(
  study, args: argparse.Namespace, command: str, results: list, num_runs: int, elapsed: float
) -> pathlib.Path:
  """Writes OUT/STUDY/report.md and results.json, and the study's section of --doc."""
  out = pathlib.Path(args.out) / study.folder(args.quick)
  out.mkdir(parents=True, exist_ok=True)
  rep = Report(study, out, args.quick)
  body = study.report(results, rep) if results else "No finished runs.\n"
  seeds = sorted({r["run"]["seed"] for r in results})
  total_wall = sum(r["wall_s"] for r in results)
  mode = "QUICK-MODE (reduced sizes; not the full study)" if args.quick else "full size"
  runs_dir = pathlib.Path(args.out) / study.runs_folder(args.quick) / "runs"
  invocation = (
    "report re-written with --report_only"
    if args.report_only
    else f"this invocation: {elapsed / 60:.1f} min, --jobs {args.jobs}"
  )
  header = (
    f"## {study.title}\n\n"
    f"**Claim (paper):** {study.claim}\n\n"
    f"- mode: **{mode}**\n"
    f"- command: `{command}`\n"
    f"- runs: {len(results)}/{num_runs} finished; seeds {seeds}; summed run wall-clock "
    f"{total_wall / 60:.1f} min ({invocation}); commit {commit_hash()}; "
    f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    f"- per-run folders: `{runs_dir}/NAME` (config.json, metrics.jsonl, eval.json per "
    "stage)\n"
    + (
      f"- records (in git, without checkpoints; experiments/repro/records.py): "
      f"`{_shown(root)}/{study.runs_folder(args.quick)}/NAME`\n"
      if (root := records.root(args.quick, args.records))
      else ""
    )
    + "\n"
  )
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
