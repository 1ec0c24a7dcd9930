"""Pipelines: several runs ("stages") of one config, e.g. SMT, then DMT from it, beside BPTT.

A config with `pipeline.order = ("smt", "dmt", "bptt")` runs each stage into workdir/STAGE with the
shared fields overridden by `pipeline.stages.STAGE`; a stage's `ckpt.init_from` may name an
earlier stage. Every stage is resolved and validated before the first one compiles.
"""

import json
import pathlib

import jax
import ml_collections

from smt_jax.config import strict
from smt_jax.data import make_dataset
from smt_jax.errors import ConfigError
from smt_jax.eval.measures import bits, bits_unit
from smt_jax.models import init_params, param_counts
from smt_jax.objectives import encoder_prefix, method_of, read_groups, read_start
from smt_jax.train.loop import train_and_evaluate
from smt_jax.train.validate import validate

TABLE_COLUMNS = (
  "stage",
  "method",
  "rnn_read_from",
  "rnn_acc",
  "rnn_loss",
  "rnn_bits",
  "bits_per",
  "enc_prefix",
  "rnn_acc_enc",
  "teacher_acc",
  "teacher_bits",
  "params",
  "updates",
  "wall_s",
  "workdir",
)


def stage_names(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The stages of pipeline.order, () for a single run."""
  return tuple(cfg.pipeline.order)


def stage_config(cfg: ml_collections.ConfigDict, stage: str, workdir: str | pathlib.Path):
  """The run config of `stage`: cfg without its pipeline, overridden by pipeline.stages.STAGE,
  with ckpt.init_from naming an earlier stage resolved to its workdir."""
  names = stage_names(cfg)
  _check(
    stage in cfg.pipeline.stages,
    f"pipeline.order names stage {stage!r} but pipeline.stages.{stage} is not defined"
    + (
      "; pipeline.order is a tuple: on the command line write "
      "--config.pipeline.order=\"('smt','dmt')\"."
      if "," in stage
      else "."
    ),
  )
  run = strict(cfg)
  run.pipeline.order, run.pipeline.stages = (), ml_collections.ConfigDict()
  try:
    run.update(cfg.pipeline.stages[stage])
  except (KeyError, TypeError) as e:
    raise ConfigError(f"pipeline.stages.{stage}: {e}") from e
  init_from = run.ckpt.init_from
  if init_from in names:
    _check(
      names.index(init_from) < names.index(stage),
      f"pipeline.stages.{stage}.ckpt.init_from={init_from!r} must name an earlier stage "
      f"of pipeline.order={names}.",
    )
    run.ckpt.init_from = str(pathlib.Path(workdir) / init_from)
  return run


def run_pipeline(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> list[dict]:
  """Runs every stage into workdir/STAGE (each resumable); writes workdir/config.json and
  workdir/summary.json; returns one row per stage with the TABLE_COLUMNS."""
  workdir = pathlib.Path(workdir)
  names = stage_names(cfg)
  configs = {s: stage_config(cfg, s, workdir) for s in names}
  produced = {str(workdir / s) for s in names}
  for run in configs.values():
    validate(run, init_from_pending=run.ckpt.init_from in produced)
  main = jax.process_index() == 0  # Every process trains; process 0 alone writes files.
  if main:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(cfg.to_json_best_effort(indent=2) + "\n")
  rows = []
  for s, run in configs.items():
    final = train_and_evaluate(run, workdir / s)
    rows.append(
      {
        "stage": s,
        "method": run.method,
        "rnn_read_from": read_start_name(run),
        "rnn_acc": final["rnn_acc"],
        "rnn_loss": final["rnn_loss"],
        "rnn_bits": bits(final["rnn_loss"]),
        "bits_per": bits_unit(make_dataset(run.data, "test")),
        "enc_prefix": f"enc[:{encoder_prefix(run)}]" if "rnn_enc_acc" in final else None,
        "rnn_acc_enc": final.get("rnn_enc_acc"),
        "teacher_acc": final.get("teacher_acc"),
        "teacher_bits": bits(final.get("teacher_loss")),
        "params": read_model_size(run),
        "updates": run.train.num_steps,
        "wall_s": final["wall_s"],
        "workdir": str(workdir / s),
      }
    )
  if main:
    (workdir / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
  return rows


def format_table(rows: list[dict]) -> str:
  """A plain-text table of pipeline rows: accuracy and loss (nats; rnn_bits: the same in bits per
  `bits_per`: pixel, character or token) of the RNN's read from x[0] (rnn_read_from), its
  accuracy after an encoder prefix (enc_prefix, rnn_acc_enc), the teacher's, and each stage's
  budget (updates, wall_s) beside the size of the model read (params)."""
  fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
  cells = [list(TABLE_COLUMNS)] + [[fmt(r.get(c)) for c in TABLE_COLUMNS] for r in rows]
  widths = [max(len(row[i]) for row in cells) for i in range(len(TABLE_COLUMNS))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def read_start_name(cfg: ml_collections.ConfigDict) -> str:
  """Where the table's main read starts: x[0], from m_empty (a method with a teacher), from the
  updater's initial memory, or by causal attention (the Transformer LM)."""
  if not method_of(cfg).recurrent:
    return "x[0] (causal LM)"
  return "x[0] (m_empty)" if read_start(cfg) == 0 else "x[0] (init)"


def read_model_size(cfg: ml_collections.ConfigDict) -> int:
  """Parameters of the model read from x[0] (`read_groups`: the RNN, or the LM)."""
  counts = param_counts(jax.eval_shape(lambda: init_params(cfg, jax.random.key(0))))
  return sum(counts[g] for g in read_groups(cfg))


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)
