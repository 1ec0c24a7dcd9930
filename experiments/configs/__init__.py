"""Experiment configs, one `get_config()` per file, and the helpers they share."""

import ml_collections

from experiments.configs.budgets import DMT_LR
from smt_jax.errors import ConfigError


def parse_int_args(arg: str, defaults: dict) -> dict:
  """The integer arguments of a config file's get_config(arg) (`--config=FILE:ARG`):
  parse_int_args("T=64,quick=1", {"T": 32, "quick": 0}) -> {"T": 64, "quick": 1}. A key not in
  defaults, or a value that is not an integer, raises ConfigError naming it."""
  out = dict(defaults)
  for part in filter(None, (arg or "").split(",")):
    key, _, value = (x.strip() for x in part.partition("="))
    if key not in defaults:
      raise ConfigError(f"config argument {key!r} is unknown; use {sorted(defaults)}.")
    try:
      out[key] = int(value)
    except ValueError:
      raise ConfigError(f"config argument {key}={value!r} is not an integer.") from None
  return out


DMT_STAGE = {  # The DMT stage's own fields in smt_dmt_bptt_stages (chosen in docs/results.md).
  # lr: budgets.dmt_lr(T) for a config of sequence length T; this is its value at short T.
  "optim": {"lr": DMT_LR, "warmup_steps": 50, "schedule": "warmup_cosine", "final_lr_frac": 0.1},
  "dmt": {"backprop_through_rollout": True, "coef_dyn": 1.0},
}


FINETUNE_STAGE = {  # BPTT fine-tuning of the SMT -> DMT RNN: from m_empty, a gentler schedule.
  "optim": {"lr": 1e-3, "warmup_steps": 20, "schedule": "warmup_cosine", "final_lr_frac": 0.1},
  "bptt": {"start": "empty"},
}


def smt_dmt_bptt_stages(
  smt_steps: int,
  dmt_steps: int,
  bptt_steps: int,
  dmt_stage: dict | None = None,
  finetune_steps: int = 0,
) -> ml_collections.ConfigDict:
  """`pipeline.stages` of the standard comparison: SMT; DMT from the SMT stage's parameters;
  BPTT of the same RNN from scratch; and "finetune", BPTT of the SMT -> DMT RNN from m_empty
  (FINETUNE_STAGE; `finetune_steps`, default bptt_steps // 2), each with its number of updates.
  pipeline.order picks the stages run, e.g. ("smt", "dmt", "finetune"). The DMT stage sets its
  own optim and dmt fields: DMT_STAGE (gradients through the rollout, cosine decay), updated by
  `dmt_stage` ({"optim": {"lr": ...}}); where rollouts start (dmt.start, dmt.Td: from m_empty
  over the whole sequence by default) stays the config's."""
  dmt = {group: dict(fields) for group, fields in DMT_STAGE.items()}
  for group, fields in (dmt_stage or {}).items():
    dmt.setdefault(group, {}).update(fields)
  return ml_collections.ConfigDict(
    {
      "smt": {"method": "smt", "train": {"num_steps": smt_steps}},
      "dmt": {
        "method": "dmt",
        "train": {"num_steps": dmt_steps},
        "ckpt": {"init_from": "smt"},
        **dmt,
      },
      "bptt": {"method": "bptt", "train": {"num_steps": bptt_steps}},
      "finetune": {
        "method": "bptt",
        "train": {"num_steps": finetune_steps or bptt_steps // 2},
        "ckpt": {"init_from": "dmt"},
        **FINETUNE_STAGE,
      },
    }
  )
