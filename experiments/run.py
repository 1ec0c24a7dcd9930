"""Launcher: python experiments/run.py --config=experiments/configs/NAME.py --workdir=DIR
[--config.field=value ...]. Re-running the same command resumes from DIR's newest readable
checkpoint.

A config with pipeline.order runs its stages into DIR/STAGE and prints a table of the results;
otherwise it is one run of config.method. Bad input (a config value, an unknown field, a config
file, the workdir) exits with status 1 and one line naming it; SIGINT / SIGTERM stop cleanly
(status 130 / 143) and the next run resumes from the last complete checkpoint. A second run on a
workdir in use exits 1 naming the process that holds it. --verbosity=0 shows library INFO logs.
--dry_run validates and prints every stage's resolved config, compiling and writing nothing.

Every local device is used (the config's mesh group). For several hosts, start the same command
on each with --coordinator_address=HOST0:PORT --num_processes=N --process_id=I (or the
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID environment variables), or with
--distributed where JAX detects the cluster itself (Slurm, Open MPI, Cloud TPU, Kubernetes).
"""

import ast
import pathlib
import sys
import textwrap

from absl import flags
from ml_collections import config_flags

from experiments import cli
from smt_jax import parallel
from smt_jax.train import train_and_evaluate
from smt_jax.train.pipeline import (
  check_overrides,
  format_table,
  resolve_stages,
  run_pipeline,
  stage_names,
)
from smt_jax.train.validate import validate


def define(fv: flags.FlagValues, argv: list[str]) -> None:
  config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", flag_values=fv, lock_config=True, sys_argv=argv
  )
  flags.DEFINE_string(
    "workdir", None, "Folder for config, metrics and checkpoints.", flag_values=fv
  )
  flags.DEFINE_string(
    "coordinator_address",
    "",
    'HOST:PORT of process 0 in a multi-host run; "" = '
    "$JAX_COORDINATOR_ADDRESS, else a single-host run.",
    flag_values=fv,
  )
  flags.DEFINE_integer(
    "num_processes",
    0,
    "Processes in a multi-host run; 0 = $JAX_NUM_PROCESSES or detected.",
    flag_values=fv,
  )
  flags.DEFINE_integer(
    "process_id",
    -1,
    "This process's index in a multi-host run; -1 = $JAX_PROCESS_ID or detected.",
    flag_values=fv,
  )
  flags.DEFINE_bool(
    "dry_run",
    False,
    "Validate the config and print every stage's resolved config (a single run's: the config); "
    "compiles nothing and writes nothing.",
    flag_values=fv,
  )
  flags.DEFINE_bool(
    "distributed",
    False,
    "Join a multi-host run whose coordinator, "
    "size and index JAX detects (Slurm, Open MPI, TPU, Kubernetes).",
    flag_values=fv,
  )


def body(fv: flags.FlagValues) -> int:
  cfg, workdir = fv["config"].value, fv["workdir"].value
  check_overrides(cfg, config_flags.get_override_values(fv["config"]))
  if fv["dry_run"].value:
    print(dry_run(cfg, workdir))
    return 0
  parallel.initialize_distributed(
    fv["coordinator_address"].value,
    fv["num_processes"].value,
    fv["process_id"].value,
    fv["distributed"].value,
  )
  if stage_names(cfg):
    print(format_table(run_pipeline(cfg, workdir)))
  else:
    final = train_and_evaluate(cfg, workdir)
    print(" ".join(f"{k}={v:.4g}" for k, v in final.items()))
  return 0


def dry_run(cfg, workdir: str) -> str:
  """The resolved config of every stage of cfg (or of its single run), validated, as text."""
  if not stage_names(cfg):
    validate(cfg)
    return f"=== {cfg.method} run into {workdir}\n{cfg}"
  stages = resolve_stages(cfg, workdir)
  return "\n".join(
    f"=== stage {s}: {run.method} into {pathlib.Path(workdir) / s}\n{run}"
    for s, run in stages.items()
  )


def configs_help(folder: pathlib.Path = pathlib.Path(__file__).parent / "configs") -> str:
  """One line per config file of `folder`: its path and the start of its docstring."""
  lines = []
  for path in sorted(folder.glob("*.py")):
    if not path.name.startswith("_"):  # __init__.py and helpers hold no config.
      doc = (ast.get_docstring(ast.parse(path.read_text())) or "").partition("\n\n")[0]
      lines.append(f"  {path.name:20s} {textwrap.shorten(doc, 78, placeholder=' ...')}")
  return (
    "Config files in experiments/configs/ (--config=experiments/configs/NAME.py):\n"
    + "\n".join(lines)
    + "\nFields: --config.GROUP.FIELD=VALUE overrides any field of smt_jax/config.py's "
    "base_config()\n(each documented there); --dry_run prints a config's resolved values."
  )


def main(argv: list[str] | None = None) -> int:
  """The launcher on `argv` (default sys.argv); returns the exit status."""
  doc = f"{__doc__.strip()}\n\n{configs_help()}"
  return cli.main(sys.argv if argv is None else argv, doc, define, body)


if __name__ == "__main__":
  sys.exit(main())
