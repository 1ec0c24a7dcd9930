"""DMT, as the PyTorch original's train_dmt.py, from an imported original checkpoint:

  python -m smt_jax.interop.import_original SAVE_DIR/checkpoint.pt --out workdirs/orig_smt
  python experiments/run.py --config=experiments/interop/original_dmt.py:workdirs/orig_smt \
      --workdir=workdirs/orig_dmt [--config.dmt.Td=64 --config.train.num_steps=1500 ...]

The model, data and original options come from the imported workdir's config.json; the RNN
starts from its parameters (ckpt.init_from), the readout from the RNN's own (already a copy of
the teacher decoder in train_smt.py's checkpoints). The sequence is Tc + Td + Tf long and every
rollout starts at Tc - 1, as in the original's forward_dmt; its DMTConfig and train_dmt.py
defaults are below. `--config.method=smt` instead fine-tunes teacher and updater with the
original's SMT step (one timestep per sequence, Tc - 1).
"""

import json
import pathlib

import ml_collections

from smt_jax.config import base_config, upgrade_saved


def _merge(into: ml_collections.ConfigDict, values: dict) -> None:
  for key, value in values.items():
    if isinstance(value, dict) and key in into and isinstance(into[key], ml_collections.ConfigDict):
      _merge(into[key], value)
    else:
      into[key] = value


def get_config(workdir: str):
  c = base_config()
  saved = upgrade_saved(json.loads((pathlib.Path(workdir) / "config.json").read_text()))
  saved.pop("pipeline", None)
  _merge(c, saved)
  c.method = "dmt"  # DMT of the RNN; the teacher is frozen (the original's hot_* defaults).
  c.ckpt.init_from = workdir  # The imported teacher and RNN.
  c.model.rnn.readout_from_decoder = False  # Keep the imported readout (train_smt.py copied it).
  c.dmt.Td = 64  # DMTConfig.Td: rollout steps.
  c.dmt.k = 1  # DMTConfig.k: supervision stride.
  tc, tf = c.model.teacher.get_ref("Tc"), c.model.teacher.get_ref("Tf")
  c.dmt.start = tc - 1  # The original's rollouts start at Tc - 1.
  c.data.T = tc + c.dmt.get_ref("Td") + tf  # DMTConfig.T (follows --config.dmt.Td=...).
  c.train.batch_size = 32  # train_dmt.py's batch_size.
  c.train.num_steps = 1500  # train_dmt.py's n_iters.
  c.optim.warmup_steps = c.train.num_steps // 100  # util.get_lr's warmup.
  c.ckpt.every = c.log.every = 50  # Checkpoint and log every 50 updates.
  c.train.eval_every = 250  # Held-out evaluation every 250 updates.
  return c
