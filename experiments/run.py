"""Launcher: python experiments/run.py --config=experiments/configs/NAME.py --workdir=DIR
[--config.field=value ...]. Re-running the same command resumes from DIR's latest checkpoint.

A config with pipeline.order runs its stages into DIR/STAGE and prints a table of the results;
otherwise it is one run of config.method. Bad configs exit with status 1 and a message naming
the field.

Every local device is used (the config's mesh group). For several hosts, start the same command
on each with --coordinator_address=HOST0:PORT --num_processes=N --process_id=I (or the
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID environment variables), or with
--distributed where JAX detects the cluster itself (Slurm, Open MPI, Cloud TPU, Kubernetes).
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from smt_jax import parallel
from smt_jax.errors import ConfigError
from smt_jax.train import NonFiniteLossError, train_and_evaluate
from smt_jax.train.pipeline import format_table, run_pipeline, stage_names

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for config, metrics and checkpoints.")
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  "",
  'HOST:PORT of process 0 in a multi-host run; "" = '
  "$JAX_COORDINATOR_ADDRESS, else a single-host run.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", 0, "Processes in a multi-host run; 0 = $JAX_NUM_PROCESSES or detected."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", -1, "This process's index in a multi-host run; -1 = $JAX_PROCESS_ID or detected."
)
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Join a multi-host run whose coordinator, "
  "size and index JAX detects (Slurm, Open MPI, TPU, Kubernetes).",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # Orbax logs every save at INFO.
    logging.set_verbosity(logging.WARNING)
  cfg, workdir = _CONFIG.value, _WORKDIR.value
  try:
    parallel.initialize_distributed(
      _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _DISTRIBUTED.value
    )
    if stage_names(cfg):
      print(format_table(run_pipeline(cfg, workdir)))
    else:
      final = train_and_evaluate(cfg, workdir)
      print(" ".join(f"{k}={v:.4g}" for k, v in final.items()))
  except (ConfigError, NonFiniteLossError, parallel.DistributedError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
