"""Study 10, how short can DMT's gradient path be? SMT -> DMT on retrieval stores the needle from
x[0] when DMT backpropagates through its whole rollout from m_empty (a path of T updates); does
it with a stop-gradient before every update (a path of 1)? Every variant here restarts DMT from
the same SMT teacher as study 1's SMT -> DMT run (the transformer-token updater, seed 0:
OUT/retrieval/runs/T{T}_transformer_smt-dmt_s0/{its last SMT stage}, trained by credit.py) with
that run's DMT stage (updates, lr, schedule: its config file's), and changes only the gradient
path. `--task NAME:T,..` adds a task of study 9 at those lengths, from study 9's SMT -> DMT run of
the same updater (OUT/tasks/runs/NAME_T{T}_transformer_smt-dmt/smt, trained by tasks.py). The
variants:

- truncation (block): dmt.grad_steps = k, a stop-gradient on the memory entering updates
  1, k + 1, 2k + 1, ..; every memory is still regressed onto the encoder's. k = T is the
  whole rollout (study 1's DMT), k = 1 the per-step stop-gradient.
- short rollouts: Td updates from the encoder's memory at a random start (dmt.random_start, the
  original's DMT), gradient through those Td; Td >= T would be the whole rollout again.
- extra variants: --extra NAME:FIELD=VALUE,... (fields of the DMT stage, e.g. dmt.coef_unif=0.01).

Each row: the RNN's accuracy from x[0] (m_empty) after DMT, its teacher's, drift, updates,
wall-clock, XLA's peak-memory estimate of the compiled DMT update, the gradient-path length; the
verdict is the shortest path reaching TARGET from x[0] on retrieval (TEACHER_SHARE of the
teacher's accuracy on the other tasks) at each T. A diagnosis section traces the needle along the
RNN's own rollout (smt_jax.eval.measures.needle_trace), or each task's answers (answer_trace).

  python experiments/repro/gradient_path.py [--T 64,128,256] [--task copy:32,64] [--teacher_out DIR]
      [--wait_teacher] [--extra NAME:FIELD=VALUE,...] [--out DIR] [--runs REGEX] [--report_only]
"""

import argparse
import ast
import json
import pathlib
import sys
import time

from experiments.bench.common import xla_stats
from experiments.repro import credit, reporting, runner, tasks
from smt_jax.checkpointing import SUBDIR
from smt_jax.errors import ConfigError
from smt_jax.eval.measures import format_acc, needle_trace
from smt_jax.eval.suite import load_run_config
from smt_jax.objectives import gradient_path_length
from smt_jax.train.loop import fresh_start

T_DEFAULT, T_QUICK = (64,), (32,)  # T = 128, 256: --T (their teachers cost hours of CPU).
TRUNCATIONS = (1, 2, 4, 8, 16, 32, 0)  # dmt.grad_steps; 0 = the whole rollout (k = T).
SHORT_ROLLOUTS = (4, 16, 64)  # dmt.Td from random starts (those < T).
UPDATER, SEED = "transformer", 0  # Study 1's SMT -> DMT run whose teacher every variant shares.
TARGET = 0.9  # Accuracy from x[0] that counts as storing the needle (retrieval) ...
TEACHER_SHARE = tasks.TEACHER_SHARE  # ... or this share of the teacher's (study 9's tasks).
RETRIEVAL = "retrieval"  # Study 1's task; the others are study 9's (tasks.VARIANTS).
STAGE = "dmt"


def teacher_of(task: str, T: int, quick: bool, teacher_out: str) -> tuple[str, pathlib.Path]:
  """(config file, teacher folder) of the SMT -> DMT run of `task` at T (study 1's for
  retrieval, study 9's otherwise): the run's config (the same DMT stage) and its last SMT
  stage's workdir under teacher_out (credit.py's and tasks.py's --out)."""
  if task == RETRIEVAL:
    run, study = credit.retrieval_run(T, UPDATER, "smt,dmt", SEED, quick, {}), credit.STUDY
  elif task in tasks.VARIANTS:
    run, study = tasks.task_run(task, T, UPDATER, "smt,dmt", quick), tasks.STUDY
  else:
    known = [RETRIEVAL, *tasks.VARIANTS]
    raise ConfigError(f"task {task!r} is unknown; use one of {known}.")
  teacher = [s for s in run.overrides["pipeline.order"] if s != STAGE][-1]
  pool = study.runs_folder(quick)
  return run.config, pathlib.Path(teacher_out) / pool / "runs" / run.name / teacher


def variants(T: int, extra: dict) -> dict:
  """{name: DMT-stage overrides} of the variants at T."""
  out = {f"k{k or T}": {"dmt.grad_steps": k} for k in TRUNCATIONS}
  for td in SHORT_ROLLOUTS:
    if td < T:
      out[f"rs{td}"] = {"dmt.random_start": True, "dmt.Td": td, "dmt.grad_steps": 0}
  return {**out, **extra}


def make_runs(cells: tuple, quick: bool, teacher_out: str, extra: dict) -> list:
  """The variants' runs in each cell (task, T)."""
  out = []
  for task, T in cells:
    config, teacher = teacher_of(task, T, quick, teacher_out)
    prefix = "" if task == RETRIEVAL else f"{task}_"
    for name, fields in variants(T, extra).items():
      overrides = {f"pipeline.stages.{STAGE}.{k}": v for k, v in fields.items()}
      out.append(
        runner.Run(
          name=f"{prefix}T{T}_{name}",
          config=config,
          overrides={
            "pipeline.order": [STAGE],
            "model.rnn.updater": UPDATER,
            "train.final_eval": True,  # Drift (eval.sections of the config) beside the read.
            f"pipeline.stages.{STAGE}.ckpt.init_from": str(teacher),
            **overrides,
          },
          seed=SEED,
          tags={"task": task, "T": T, "variant": name},
        )
      )
  return out


def stage_dir(result: dict) -> pathlib.Path:
  return pathlib.Path(result["workdir"]) / STAGE


def cached(result: dict, name: str, compute) -> dict:
  """compute(stage config, stage folder), cached as STAGE/name.json in the run's folder."""
  path = stage_dir(result) / f"{name}.json"
  if not path.is_file():
    path.write_text(json.dumps(compute(load_run_config(str(stage_dir(result))), stage_dir(result))))
  return json.loads(path.read_text())


def step_memory(cfg, _) -> dict:
  """XLA's estimate of the peak bytes of one compiled DMT update of cfg (the trainer's step, from
  fresh parameters of the same shapes)."""
  cfg.ckpt.init_from = ""
  state, step_fn = fresh_start(cfg)
  lower = getattr(step_fn, "lower", None)
  if lower is None:
    return {}
  return {"peak_bytes": xla_stats(lower(state, 0).compile()).get("peak_bytes")}


def final_read(result: dict) -> dict:
  """The final evaluation's read of the RNN from x[0] (acc, acc_interval, num_sequences, ...)."""
  path = stage_dir(result) / "eval.json"
  if not path.is_file():
    return {}
  read = json.loads(path.read_text())["read"]
  return read["curves"][read["roles"]["rnn"]]


def path_length(result: dict) -> int:
  cfg = load_run_config(str(stage_dir(result)))
  return gradient_path_length(cfg, cfg.data.T)


def fmt3(value) -> str:
  return "—" if value is None else f"{value:.3f}"


def target_of(task: str, teacher_acc) -> float | None:
  """The accuracy from x[0] that counts as storing: TARGET on retrieval, TEACHER_SHARE of the
  teacher's on the other tasks (None without the teacher's accuracy)."""
  if task == RETRIEVAL:
    return TARGET
  return None if teacher_acc is None else TEACHER_SHARE * teacher_acc


def report(results: list, rep: reporting.Report) -> str:
  cells = reporting.group(results, "task", "T", "variant")
  rows, best, sizes = [], {}, set()
  for (task, T, variant), rs in cells.items():
    r = rs[0]
    dmt, path = r["stages"][STAGE], path_length(r)
    acc = dmt.get("rnn_acc")
    read = final_read(r)
    sizes |= {read["num_sequences"]} if "num_sequences" in read else set()
    peak = cached(r, "step_memory", step_memory).get("peak_bytes")
    rows.append(
      [
        task,
        T,
        variant,
        dmt.get("rnn_read_from", "—"),
        path,
        "—" if acc is None else format_acc(acc, read.get("acc_interval")),
        fmt3(dmt.get("teacher_acc")),
        fmt3(dmt.get("drift_settled")),
        dmt["steps"],
        f"{dmt['wall_s']:.0f}",
        "—" if peak is None else f"{peak / 2**20:.1f}",
      ]
    )
    target = target_of(task, dmt.get("teacher_acc"))
    if acc is not None and target is not None and acc >= target:
      best[task, T] = min(best.get((task, T), (path, variant)), (path, variant))
  table = reporting.md_table(
    [
      "task",
      "T",
      "variant",
      "RNN read from",
      "gradient path (updates)",
      "RNN acc from x[0] [95 %]",
      "teacher acc",
      "drift (settled MSE)",
      "DMT updates",
      "DMT wall s",
      "peak MiB (XLA, one update)",
    ],
    rows,
  )
  return (
    f"{table}\n\nVariants: kN = block truncation, dmt.grad_steps = N (a stop-gradient on the "
    "memory entering updates 1, N + 1, 2N + 1, ...: each target's path is 1 .. N updates; kT is "
    "study 1's DMT, k1 the per-step stop-gradient); rsN = rollouts of N updates from the "
    "encoder's memory at a random start (gradient through all N); others as named. Every variant "
    f"starts from its task's SMT teacher (the {UPDATER} updater, seed {SEED}: study 1's on "
    "retrieval, study 9's on the other tasks) with that run's DMT stage's updates and learning "
    "rate; accuracy: the RNN reads the whole sequence from m_empty (the final evaluation: "
    f"{' / '.join(map(str, sorted(sizes))) or 'its'} test sequences, drawn with a key no choice "
    "was made on; Wilson interval; on the other tasks over every answer); teacher acc: the "
    "encoder-decoder on the same read; drift: the final evaluation's settled MSE to the "
    "encoder's memory; wall-clock as measured on a shared machine; peak: XLA's memory analysis "
    "of the compiled update (arguments + outputs + temporaries).\n\n"
    f"**Verdict:** {verdict_text(best, list(dict.fromkeys((t, T) for t, T, _ in cells)))}\n"
    + diagnosis(cells)
  )


def verdict_text(best: dict, cells: list) -> str:
  """The shortest gradient path reaching the target from x[0] in each cell (task, T), and, per
  task measured at two or more T, whether it grows with T."""
  parts = []
  for task, T in cells:
    goal = f"≥ {TARGET}" if task == RETRIEVAL else f"≥ {TEACHER_SHARE} of the teacher's accuracy"
    found = best.get((task, T))
    parts.append(
      f"{task}, T = {T}: shortest path reaching {goal} from x[0]: "
      + (
        f"{found[0]} update{'s' * (found[0] != 1)} ({found[1]})"
        if found
        else "none of the finished variants"
      )
    )
  for task in dict.fromkeys(t for t, _ in cells):
    paths = [best[t, T][0] for t, T in sorted(cells) if t == task and (t, T) in best]
    if len(paths) >= 2:
      grows = paths == sorted(paths) and paths[-1] > paths[0]
      parts.append(f"on {task} it {'grows' if grows else 'does not grow'} with T")
  return "; ".join(parts) + "."


def diagnosis(cells: dict) -> str:
  """Where along its own rollout each variant's RNN holds or loses the needle (retrieval:
  smt_jax.eval.measures.needle_trace, and whether one update writes it) or the answers (the
  other tasks: answer_trace, as study 9 reports them)."""
  needle = {k: rs for k, rs in cells.items() if k[0] == RETRIEVAL}
  answers = {k: rs for k, rs in cells.items() if k[0] != RETRIEVAL}
  return (needle_section(needle) if needle else "") + (answers_section(answers) if answers else "")


def needle_section(cells: dict) -> str:
  rows = []
  for (_, T, variant), rs in cells.items():
    tr = cached(rs[0], "needle_trace", needle_trace)
    at = {r: i for i, r in enumerate(tr["offset"])}
    rows.append(
      [T, variant]
      + [fmt3(tr["enc_acc"][at[0]]), fmt3(tr["step_acc"][at[0]])]
      + [fmt3(tr["rnn_acc"][at[r]]) for r in (0, 1, T // 4, T // 2 - 1)]
      + [fmt3(tr["step_err_needle"]), fmt3(tr["step_err_elsewhere"]), fmt3(tr["drift"][at[0]])]
    )
  table = reporting.md_table(
    [
      "T",
      "variant",
      "encoder at the needle",
      "one update from enc, at the needle",
      "RNN at the needle",
      "RNN +1",
      "RNN +T/4",
      "RNN +T/2-1",
      "write MSE at the needle",
      "one-step MSE elsewhere",
      "drift at the needle",
    ],
    rows,
  )
  return (
    "\n\n**Where the needle is lost (retrieval).** On 256 test sequences, aligned on each one's "
    "needle (the token after the first marker, at 0.4T-0.5T): the teacher's decoder predicts the "
    "answer from a memory at the needle + r, reading the true tokens after it (the query "
    "included, not the needle): from the RNN's own memory after reading x[0 .. needle + r] from "
    "m_empty ('RNN'), from the encoder's own memory there ('encoder': what the targets hold), "
    "and from one update of the encoder's memory just before the needle by the needle ('one "
    "update from enc': can the updater write the needle when handed the teacher's memory?). The "
    "write MSE is that update's squared distance to the encoder's memory at the needle, against "
    "the same one-step error at every other position; drift is the RNN's distance there. "
    f"Chance is 1/7.\n\n{table}\n"
  )


def answers_section(cells: dict) -> str:
  traces = {cell: tasks.trace_of(rs[0]) for cell, rs in cells.items()}
  rows = [[*cell, *tasks.trace_columns(tr)] for cell, tr in traces.items() if tr is not None]
  table = reporting.md_table(["task", "T", "variant", *tasks.TRACE_COLUMNS], rows)
  return (
    "\n\n**Where the answers are lost (study 9's tasks).** As study 9 measures it "
    f"({tasks.TRACE_DEFINITION}), on each variant's RNN.\n\n{table}\n"
  )


def parse_extra(specs: list) -> dict:
  """["noise:dmt.coef_unif=0.01,dmt.k=2"] -> {"noise": {"dmt.coef_unif": 0.01, "dmt.k": 2}}."""
  out = {}
  for spec in specs:
    name, _, fields = spec.partition(":")
    if not name or not fields:
      raise ConfigError(f"--extra {spec!r}: use NAME:FIELD=VALUE[,FIELD=VALUE].")
    out[name] = {}
    for part in fields.split(","):
      field, _, value = part.partition("=")
      try:
        out[name][field.strip()] = ast.literal_eval(value.strip())
      except (ValueError, SyntaxError):
        out[name][field.strip()] = value.strip()
  return out


def teacher_finished(teacher: pathlib.Path) -> bool:
  """Whether the teacher's run finished (its result.json: a teacher that stopped at its target
  accuracy saves fewer updates than its cap) or its stage saved its last update (its config's
  train.num_steps)."""
  if (teacher.parent / "result.json").is_file():
    return True
  ckpts = teacher / SUBDIR
  if not (teacher / "config.json").is_file() or not ckpts.is_dir():
    return False
  total = json.loads((teacher / "config.json").read_text())["train"]["num_steps"]
  return any(p.name.isdigit() and int(p.name) >= total for p in ckpts.iterdir())


def study(cells: tuple, teacher_out: str, extra: dict):
  """The study in `cells` ((task, T) pairs), its teachers under teacher_out, with `extra`
  variants ({name: DMT-stage overrides}); one seed (the teachers'), whatever --seeds says."""
  return runner.Study(
    name="gradient_path",
    title="Study 10: how short can DMT's gradient path be? (retrieval and study 9's tasks, read "
    "from x[0])",
    claim="DMT corrects drift once SMT's one-update gradient paths have assigned credit, so a "
    "short gradient path through DMT's rollout should suffice to store the needle from x[0].",
    runs=lambda quick, seeds: make_runs(cells, quick, teacher_out, extra),
    report=report,
  )


def parse_cells(Ts: str, task_specs: list, quick: bool) -> tuple:
  """((task, T), ...) of --T (retrieval's lengths; default T_DEFAULT, T_QUICK with --quick) and
  each --task NAME:T,T,..."""
  lengths = lambda text: tuple(int(t) for t in text.split(",") if t.strip())
  cells = [(RETRIEVAL, T) for T in lengths(Ts) or (T_QUICK if quick else T_DEFAULT)]
  for spec in task_specs:
    task, _, Ts_of_task = spec.partition(":")
    if task not in tasks.VARIANTS or not lengths(Ts_of_task):
      raise ConfigError(f"--task {spec!r}: use NAME:T[,T] with NAME one of {list(tasks.VARIANTS)}.")
    cells += [(task, T) for T in lengths(Ts_of_task)]
  return tuple(cells)


def main(argv: list) -> None:
  """Study 10's command line: its own flags, then runner.main's (--out, --runs, ...)."""
  p = argparse.ArgumentParser(add_help=False)
  p.add_argument("--T", default="", help="retrieval's lengths, e.g. 64,128,256 (default 64)")
  p.add_argument("--task", action="append", default=[], help="a study 9 task: NAME:T[,T]")
  p.add_argument("--teacher_out", default=str(runner.REPO / "workdirs" / "repro"))
  p.add_argument("--wait_teacher", action="store_true", help="poll until the teachers finish")
  p.add_argument("--extra", action="append", default=[], help="NAME:FIELD=VALUE,...")
  args, rest = p.parse_known_args(argv)
  quick = "--quick" in rest
  try:
    cells = parse_cells(args.T, args.task, quick)
    s = study(cells, args.teacher_out, parse_extra(args.extra))
    teachers = sorted({teacher_of(task, T, quick, args.teacher_out)[1] for task, T in cells})
  except (ValueError, ConfigError) as e:
    sys.exit(f"gradient_path.py: {e}")
  while "--report_only" not in rest and not all(map(teacher_finished, teachers)):
    missing = ", ".join(str(t) for t in teachers if not teacher_finished(t))
    if not args.wait_teacher:
      sys.exit(
        f"gradient_path.py: the SMT teacher has not finished: {missing} (train it with "
        "experiments/repro/credit.py or tasks.py, or pass --wait_teacher)."
      )
    print(f"waiting for {missing}", flush=True)
    time.sleep(60)
  runner.main(s, rest)


if __name__ == "__main__":
  main(sys.argv[1:])
