"""Evaluates a finished run: python experiments/evaluate.py --workdir=DIR [--config.eval.x=y ...].

Reads DIR/config.json and DIR's newest readable checkpoint, writes DIR/eval.json, read.png,
drift.png, length.png and samples.png (pixel data) or samples.txt (tokens), and prints a short
table. eval.json is merged: evaluating some sections (--config.eval.sections="('write',)")
updates those and keeps the others of the same checkpoint. A pipeline folder (DIR/config.json
with pipeline.order) evaluates each stage that has been trained, DIR/STAGE. Any field of the
run's config can be overridden (e.g. --config.eval.temperature=0 --config.data.path=/data/mnist);
evaluation knobs are the eval group of smt_jax.config.base_config.
Bad input exits with status 1 and one line; --verbosity=0 shows library INFO logs.
"""

import json
import pathlib
import sys

from absl import flags
from ml_collections import config_flags

from experiments import cli
from smt_jax.config import FREE_FORM, base_config
from smt_jax.errors import ConfigError
from smt_jax.eval import evaluate, format_table, load_run_config
from smt_jax.train import load_params


def define(fv: flags.FlagValues, argv: list[str]) -> None:
  config_flags.DEFINE_config_dict(
    "config", base_config(), "Overrides of the run's config.", flag_values=fv, sys_argv=argv
  )
  flags.DEFINE_string(
    "workdir", None, "Folder of a training run (config.json, checkpoints).", flag_values=fv
  )


def body(fv: flags.FlagValues) -> int:
  workdir = pathlib.Path(fv["workdir"].value)
  if not workdir.is_dir():
    raise ConfigError(f"--workdir={workdir} is not a folder; name the workdir of a training run.")
  overrides = config_flags.get_override_values(fv["config"])
  stored = _stored_config(workdir)
  stages = tuple((stored.get("pipeline") or {}).get("order") or ())
  if not stages:
    _evaluate_run(workdir, overrides)
    return 0
  present = [s for s in stages if (workdir / s / "config.json").is_file()]
  if not present:
    raise ConfigError(
      f"{workdir} is a pipeline folder; its stages are {', '.join(stages)}, and none has been "
      f"trained yet: pass --workdir={workdir}/STAGE of a trained stage."
    )
  for stage in present:
    print(f"stage {stage}:", file=sys.stderr)
    _stored_config(workdir / stage)
    _evaluate_run(workdir / stage, overrides)
  return 0


def _stored_config(workdir: pathlib.Path) -> dict:
  """workdir/config.json as a dict; ConfigError when it is missing, broken or has a field
  unknown to base_config."""
  config_path = workdir / "config.json"
  if not config_path.is_file():
    raise ConfigError(f"{config_path} not found: --workdir must be the folder of a training run.")
  try:
    stored = json.loads(config_path.read_text())
  except ValueError as e:
    raise ConfigError(
      f"{config_path} is not valid JSON ({e}); fix it, or delete it and re-run the training "
      "command (which resumes and writes it again)."
    ) from None
  if not isinstance(stored, dict):
    raise ConfigError(f"{config_path} does not hold a config (a JSON object).")
  known = set(cli.fields(base_config()))
  for name in _stored_fields(stored):
    if name not in known and not name.startswith(FREE_FORM):
      raise ConfigError(
        f"{config_path} has a field {name} that smt_jax.config.base_config lacks (written by "
        "another version of smt_jax?); remove it from the file."
      )
  return stored


def _evaluate_run(workdir: pathlib.Path, overrides: dict) -> None:
  """Evaluates the latest checkpoint of one run's workdir (config.json checked); prints its
  table."""
  cfg = load_run_config(str(workdir), overrides)
  skip = lambda step, reason: print(
    f"checkpoint {step} skipped: it cannot be read ({reason})", file=sys.stderr
  )
  params, step = load_params(workdir, on_skip=skip)
  print(
    f"evaluating the checkpoint of step {step} (train.num_steps = {cfg.train.num_steps})",
    file=sys.stderr,
  )
  summary = evaluate(cfg, params, str(workdir), step)
  print(format_table(summary))
  print(f"wrote {', '.join(summary['files'])} to {workdir}")


def _stored_fields(tree: dict, prefix: str = "") -> list[str]:
  out = []
  for key, value in tree.items():
    out.append(prefix + key)
    if isinstance(value, dict):
      out += _stored_fields(value, f"{prefix}{key}.")
  return out


def main(argv: list[str] | None = None) -> int:
  """evaluate.py on `argv` (default sys.argv); returns the exit status."""
  return cli.main(sys.argv if argv is None else argv, __doc__, define, body, base_config())


if __name__ == "__main__":
  sys.exit(main())
