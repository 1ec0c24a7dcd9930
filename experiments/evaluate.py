"""Evaluates a finished run: python experiments/evaluate.py --workdir=DIR [--config.eval.x=y ...].

Reads DIR/config.json and DIR's latest checkpoint, writes DIR/eval.json, read.png, drift.png,
length.png and samples.png (pixel data) or samples.txt (tokens), and prints a short table.
Any field of the run's config can be overridden (e.g. --config.eval.temperature=0
--config.data.path=/data/mnist); evaluation knobs are the eval group of smt_jax.config.base_config.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from smt_jax.config import base_config
from smt_jax.errors import ConfigError
from smt_jax.eval import evaluate_workdir, format_table

_CONFIG = config_flags.DEFINE_config_dict("config", base_config(), "Overrides of the run's config.")
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Folder of a training run (config.json, checkpoints)."
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  overrides = config_flags.get_override_values(flags.FLAGS["config"])
  try:
    summary = evaluate_workdir(_WORKDIR.value, overrides)
  except (ConfigError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(format_table(summary))
  print(f"wrote {', '.join(summary['files'])} to {_WORKDIR.value}")


if __name__ == "__main__":
  app.run(main)
