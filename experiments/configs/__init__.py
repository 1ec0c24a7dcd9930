"""Experiment configs, one `get_config()` per file, and the helpers they share."""

import ml_collections

from experiments.configs.budgets import DMT_LR, dmt_lr
from smt_jax.config import base_config
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
  "dmt": {"grad_steps": 0, "coef_dyn": 1.0},
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


def real_data_config(
  name: str, path: str, vocab_size: int, T: int, budgets: dict, lm_depth: int
) -> ml_collections.ConfigDict:
  """The x[0] recipe on a prepared token stream (digits.py, mnist.py, kjv.py), sized for 2 CPU
  cores: SMT with the full-past streaming teacher (Tc = T: m_t = E(x_0..x_t), all T + 1
  memories of a sequence in one pass); DMT from the SMT stage, rolled out from m_empty over the
  whole sequence with gradients through it (DMT_STAGE at the lr budgets.dmt_lr(T)); BPTT of
  the same RNN from scratch; "lm", the causal Transformer LM baseline at the same width with
  `lm_depth` blocks (`lm_stage`). Every model is read from x[0].

  budgets: updates of each stage {"smt", "dmt", "bptt", "lm"}; BPTT's are meant to give it at
  least SMT -> DMT's wall-clock (estimated from the retrieval rates, not measured on these data:
  the studies report every run's wall-clock, and a short budget is raised there). From T = 128
  on SMT decodes 32 random memories per sequence (smt.n_dec) instead of all T + 1. The read
  stages keep their best validation read too (ckpt.keep_best: STAGE/best), so a run that
  overfits its budget can be read where it should have stopped.
  """
  c = base_config()
  c.data.name = name  # Prepared stream (see the config's docstring for the command).
  c.data.path = path  # Its folder.
  c.data.vocab_size = vocab_size  # Bytes (256) or grey levels.
  c.data.T = T  # Tokens per sequence.
  c.model.d_model = 64  # d (paper: 256).
  c.model.num_heads = 4  # Heads (paper: 8).
  c.model.mlp_ratio = 2  # MLP width 2d.
  c.model.mem_tokens = 4  # K (paper: 16): Z = K * d = 256.
  c.model.teacher.encoder = "stream"  # All memories of a sequence in one pass.
  c.model.teacher.Tc = T  # The full past.
  c.model.teacher.Tf = 16  # Future tokens each memory predicts (paper: 64).
  c.model.rnn.updater = "transformer"  # The transformer-token updater (studies also run mlp).
  c.model.rnn.depth = 2  # Updater blocks.
  c.model.rnn.hidden = 256  # Width of the MLP / GRU updaters' embedding and MLP.
  c.smt.n_t = 0  # Every memory position -1..T-1 in the dynamics and uniformity terms ...
  c.smt.n_dec = 32 if T >= 128 else 0  # ... and this many decoded (0 = all).
  c.dmt.k = 1  # Regress every rolled memory (the stream teacher gives them all in one pass).
  c.optim.lr = 2e-3  # Peak lr of SMT, BPTT and the LM (DMT: its stage's).
  c.optim.warmup_steps = 50  # Warmup.
  c.train.batch_size = 16  # Sequences per update (paper: 128).
  c.train.eval_every = 100  # Held-out evaluation every 100 updates (the learning curves).
  c.train.eval_batch_size = 32  # Held-out sequences per evaluation batch.
  c.log.every = 25  # Training metrics every 25 updates.
  c.ckpt.every = 100  # Checkpoint every 100 updates.
  c.ckpt.keep = 1  # Keep the last.
  c.eval.num_batches = 8  # Final read over 8 * 16 held-out sequences.
  dmt_stage = {"optim": {"lr": dmt_lr(T)}}
  c.pipeline.order = ("smt", "dmt", "bptt", "lm")  # Stages, each into WORKDIR/STAGE.
  stages = smt_dmt_bptt_stages(budgets["smt"], budgets["dmt"], budgets["bptt"], dmt_stage)
  stages.lm = lm_stage(budgets["lm"], lm_depth)
  for read in ("dmt", "bptt", "lm"):  # The stages whose model is read: also at their best
    stages[read].ckpt = {**stages[read].get("ckpt", {}), "keep_best": "rnn_loss"}  # validation.
  c.pipeline.stages = stages
  return c


def lm_stage(steps: int, depth: int) -> dict:
  """`pipeline.stages.lm`: the causal Transformer LM baseline (method "lm": the decoder, `depth`
  blocks at the config's width, with its own embedding) trained from scratch for `steps`."""
  return {
    "method": "lm",
    "train": {"num_steps": steps},
    "model": {
      "teacher": {"decoder_depth": depth, "shared_embed": False},
      "rnn": {"readout_from_decoder": False},
    },
  }
