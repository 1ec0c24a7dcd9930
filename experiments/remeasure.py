"""Re-measures a trained RNN's accuracy from x[0] on fresh test sequences, with a 95 % interval:

  python experiments/remeasure.py --workdir=RUN [--num_sequences=1024] [--seed=S]
  python experiments/remeasure.py --rnn=FILE.npz [--num_sequences=1024] [--seed=S]

RUN is the folder of a training run or of one pipeline stage (config.json and checkpoints/);
FILE an RNN exported alone (`python -m smt_jax.export`: updater, readout, start memory and the
run's model, data and eval groups; docs/results/rnns/ keeps the headline rows' RNNs this way).
Only the RNN is read (its updater, readout and start memory: `smt_jax.eval.measures.rnn_alone`),
teacher-forced from x[0] over the test split, drawn as the final evaluation's "read" section
draws it (`smt_jax.eval.config.final_eval_batches`): with the run's eval.seed (the default) and
eval.batch_size it reads the final evaluation's own sequences, so the accuracy matches eval.json's
"rnn from x[0]" at the same count; another --seed draws sequences no evaluation has read.
Prints one line and writes the numbers to --out (default RUN/remeasure.json; with --rnn, no file
unless --out is given). The interval is Wilson's over the scored labels (one per sequence on
retrieval; `measures.read_interval`). Bad input exits with status 1 and one line.
"""

import json
import pathlib
import sys

from absl import flags

from experiments import cli
from smt_jax import export
from smt_jax.checkpointing import load_params
from smt_jax.config import base_config, strict, upgrade_saved
from smt_jax.errors import ConfigError
from smt_jax.eval import load_run_config
from smt_jax.eval.measures import format_acc, rnn_alone, x0_read
from smt_jax.train.pipeline import read_start_name


def define(fv: flags.FlagValues, argv: list[str]) -> None:
  flags.DEFINE_string(
    "workdir",
    None,
    "Folder of a training run or pipeline stage (config.json, checkpoints).",
    flag_values=fv,
  )
  flags.DEFINE_string(
    "rnn",
    None,
    "An exported RNN (.npz of python -m smt_jax.export), instead of --workdir.",
    flag_values=fv,
  )
  flags.DEFINE_integer(
    "num_sequences", 1024, "Test sequences read (rounded up to whole batches).", flag_values=fv
  )
  flags.DEFINE_integer(
    "seed", None, "Seed of the test sequences; default: the run's eval.seed.", flag_values=fv
  )
  flags.DEFINE_integer(
    "batch_size", 0, "Sequences per batch; 0 = the run's eval.batch_size.", flag_values=fv
  )
  flags.DEFINE_string("out", None, "JSON output; default WORKDIR/remeasure.json.", flag_values=fv)


def trained_rnn(workdir: pathlib.Path) -> tuple:
  """(cfg, rnn params, m_start, step) of a run's or stage's latest checkpoint."""
  if not (workdir / "config.json").is_file():
    raise ConfigError(
      f"--workdir={workdir} has no config.json: name the folder of a training run or of one "
      "pipeline stage (e.g. workdirs/run/dmt)."
    )
  cfg = load_run_config(str(workdir))
  if cfg.pipeline.order:
    stages = ", ".join(str(workdir / s) for s in cfg.pipeline.order)
    raise ConfigError(f"--workdir={workdir} is a pipeline's folder; name one stage: {stages}.")
  params, step = load_params(workdir)
  return cfg, *rnn_alone(cfg, params), step


def exported_rnn(path: pathlib.Path) -> tuple:
  """(cfg, rnn params, m_start, step) of an RNN exported alone (smt_jax.export)."""
  if not path.is_file():
    raise ConfigError(f"--rnn={path} not found: name a .npz written by python -m smt_jax.export.")
  try:
    rnn = export.load(path)
    meta = rnn.config
    cfg = strict(base_config())
    cfg.update(upgrade_saved({g: meta[g] for g in ("method", "model", "data", "eval")}))
    if cfg.method == "bptt" and meta["start"] == "m_empty":  # A BPTT fine-tune from m_empty:
      cfg.bptt.start = "empty"  # the file's m_start is m_empty, and the read is named so.
  except (KeyError, ValueError, OSError) as e:
    raise ConfigError(
      f"--rnn={path} is not an RNN exported with its data and eval groups ({e!r}); export it "
      "again with python -m smt_jax.export."
    ) from e
  return cfg, rnn.params, rnn.m_start, meta["step"]


def body(fv: flags.FlagValues) -> int:
  workdir, path = fv["workdir"].value, fv["rnn"].value
  if (workdir is None) == (path is None):
    raise ConfigError("pass exactly one of --workdir=RUN and --rnn=FILE.npz.")
  num, batch_size = fv["num_sequences"].value, fv["batch_size"].value
  if num < 1 or batch_size < 0:
    raise ConfigError(
      f"--num_sequences={num} must be >= 1 and --batch_size={batch_size} >= 0 (0 = the run's "
      "eval.batch_size)."
    )
  source = pathlib.Path(workdir or path)
  cfg, rnn, m_start, step = trained_rnn(source) if workdir else exported_rnn(source)
  seed = cfg.eval.seed if fv["seed"].value is None else fv["seed"].value
  read = x0_read(cfg, rnn, m_start, num, seed, batch_size or cfg.eval.batch_size)
  result = {
    "source": str(source),
    "step": step,
    "method": cfg.method,
    "read_from": read_start_name(cfg),
    **read,
  }
  out = fv["out"].value or (source / "remeasure.json" if workdir else None)
  if out:
    pathlib.Path(out).write_text(json.dumps(result, indent=1) + "\n")
  print(
    f"{source} (step {step}, {cfg.method}): RNN from {result['read_from']} acc "
    f"{format_acc(read['acc'], read['acc_interval'])} (95 %, Wilson) on "
    f"{read['num_sequences']} test sequences ({read['num_labels']} labels, T {read['T']}, "
    f"seed {seed})" + (f"; wrote {out}" if out else "")
  )
  return 0


def main(argv: list[str] | None = None) -> int:
  """remeasure.py on `argv` (default sys.argv); returns the exit status."""
  return cli.main(sys.argv if argv is None else argv, __doc__, define, body, workdir_required=False)


if __name__ == "__main__":
  sys.exit(main())
