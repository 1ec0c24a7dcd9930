"""Pipelines: several runs ("stages") of one config, e.g. SMT, then DMT from it, beside BPTT.

A config with `pipeline.order = ("smt", "dmt", "bptt")` runs each stage into workdir/STAGE with the
shared fields overridden by `pipeline.stages.STAGE`; a stage's `ckpt.init_from` may name an
earlier stage. Every stage is resolved and validated before the first one compiles.
"""

import json
import pathlib
from collections.abc import Mapping

import jax
import ml_collections

from smt_jax.config import strict
from smt_jax.data import make_dataset
from smt_jax.errors import ConfigError
from smt_jax.eval.measures import bits, bits_unit, format_acc
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
  "split",
  "num_sequences",
  "workdir",
)
INTERVAL_OF = {"rnn_acc": "rnn", "rnn_acc_enc": "rnn_enc", "teacher_acc": "teacher"}


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


def stage_fields(cfg: ml_collections.ConfigDict, stage: str) -> list[str]:
  """Dotted names of the fields that pipeline.stages.STAGE sets (its leaves)."""

  def leaves(tree, prefix):
    out = []
    for key, value in tree.items():
      if isinstance(value, ml_collections.ConfigDict):
        out += leaves(value, f"{prefix}{key}.")
      else:
        out.append(prefix + key)
    return out

  return leaves(cfg.pipeline.stages[stage], "") if stage in cfg.pipeline.stages else []


def check_overrides(cfg: ml_collections.ConfigDict, overrides: Mapping[str, object]) -> None:
  """ConfigError for a command-line field ({dotted name: value}, as ml_collections' config flag
  collects them) that a stage of pipeline.order sets itself: the stage's value would silently
  win. The message names the stage fields to set instead; a field is accepted when each of those
  is set on the command line too (then the stages that do not set it take it). A field no stage
  sets applies to every stage; pipeline.* fields are the pipeline's own."""
  names = stage_names(cfg)
  for field, value in overrides.items():
    if not names or field.startswith("pipeline."):
      continue
    hits = [
      f"pipeline.stages.{s}.{f}"
      for s in names
      for f in stage_fields(cfg, s)
      if (f == field or f.startswith(field + ".") or field.startswith(f + "."))
      and f"pipeline.stages.{s}.{f}" not in overrides
    ]
    if hits:
      example = hits[0] + (f"={value}" if hits[0].endswith("." + field) else "")
      raise ConfigError(
        f"--config.{field} would be overridden by the pipeline's stages, which set "
        f"{', '.join(hits)}; set those instead, e.g. --config.{example}."
      )


def resolve_stages(
  cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> dict[str, ml_collections.ConfigDict]:
  """{stage: its run config} (stage_config) for every stage of pipeline.order, each validated;
  nothing is compiled or written."""
  workdir = pathlib.Path(workdir)
  names = stage_names(cfg)
  configs = {s: stage_config(cfg, s, workdir) for s in names}
  produced = {str(workdir / s) for s in names}
  for run in configs.values():
    validate(run, init_from_pending=run.ckpt.init_from in produced)
  return configs


def run_pipeline(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> list[dict]:
  """Runs every stage into workdir/STAGE (each resumable); writes workdir/config.json and
  workdir/summary.json; returns one row per stage with the TABLE_COLUMNS (`stage_row`)."""
  workdir = pathlib.Path(workdir)
  configs = resolve_stages(cfg, workdir)
  main = jax.process_index() == 0  # Every process trains; process 0 alone writes files.
  if main:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(cfg.to_json_best_effort(indent=2) + "\n")
  rows = []
  for s, run in configs.items():
    final = train_and_evaluate(run, workdir / s)
    rows.append(stage_row(s, run, final, workdir / s))
  if main:
    (workdir / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
  return rows


def stage_row(stage: str, run: ml_collections.ConfigDict, final: dict, workdir: pathlib.Path):
  """The summary row of a finished stage: its read accuracies and loss from the final
  evaluation's test split (workdir/eval.json, with "*_interval" 95 % intervals and
  "num_sequences"; "split": "test"), or, without one (train.final_eval off, or no eval.json with
  a read section, as on processes other than 0), from the last validation evaluation in `final`
  ("split": "val")."""
  row = {
    "stage": stage,
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
    "updates": final["step"],  # Fewer than train.num_steps where train.stop_at_value stopped it.
    "wall_s": final["wall_s"],
    "split": "val",
    "num_sequences": run.train.eval_batch_size * run.train.eval_batches,
    "workdir": str(workdir),
  }
  path = workdir / "eval.json"
  read = json.loads(path.read_text()).get("read") if path.is_file() else None
  if not run.train.final_eval or not read or "roles" not in read:
    return row
  rnn_loss = read["curves"][read["roles"]["rnn"]]["loss"]
  row.update(split="test", rnn_loss=rnn_loss, rnn_bits=bits(rnn_loss))
  if "teacher" in read["roles"]:
    row["teacher_bits"] = bits(read["curves"][read["roles"]["teacher"]]["loss"])
  for column, role in INTERVAL_OF.items():
    if role in read["roles"]:
      curve = read["curves"][read["roles"][role]]
      row.update({column: curve["acc"], f"{column}_interval": curve["acc_interval"]})
      row["num_sequences"] = curve["num_sequences"]
  return row


def format_table(rows: list[dict]) -> str:
  """A plain-text table of pipeline rows: accuracy and loss (nats; rnn_bits: the same in bits per
  `bits_per`: pixel, character or token) of the RNN's read from x[0] (rnn_read_from), its
  accuracy after an encoder prefix (enc_prefix, rnn_acc_enc), the teacher's, each as
  "acc [lo, hi]" where the row has a 95 % interval, each stage's budget (updates, wall_s) beside
  the size of the model read (params), and the split and number of sequences read."""
  fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
  cell = lambda r, c: (
    format_acc(r.get(c), r.get(f"{c}_interval")) if c in INTERVAL_OF else fmt(r.get(c))
  )
  cells = [list(TABLE_COLUMNS)] + [[cell(r, c) for c in TABLE_COLUMNS] for r in rows]
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
