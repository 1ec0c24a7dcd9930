"""Launcher: python experiments/run.py --config=experiments/configs/NAME.py --workdir=DIR
[--config.field=value ...]. Re-running the same command resumes from DIR's latest checkpoint.

A config with pipeline.order runs its stages into DIR/STAGE and prints a table of the results;
otherwise it is one run of config.method. Bad configs exit with status 1 and a message naming
the field.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from smt_jax.config import ConfigError
from smt_jax.train import NonFiniteLossError, train_and_evaluate
from smt_jax.train.pipeline import format_table, run_pipeline, stage_names

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for config, metrics and checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # Orbax logs every save at INFO.
    logging.set_verbosity(logging.WARNING)
  cfg, workdir = _CONFIG.value, _WORKDIR.value
  try:
    if stage_names(cfg):
      print(format_table(run_pipeline(cfg, workdir)))
    else:
      final = train_and_evaluate(cfg, workdir)
      print(" ".join(f"{k}={v:.4g}" for k, v in final.items()))
  except (ConfigError, NonFiniteLossError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
