"""Reproduction studies (experiments/repro): stack state tracking (push a symbol or <pop>; a pop
must emit the symbol on top), SMT -> DMT beside BPTT of the same RNN.

  get_config("T=32,quick=0"): T = training length (default 32), quick = 1 for the reduced
  `--quick` budgets. Labels are dense (every pop), the stack holds at most `depth` symbols, so
  the memory must track a bounded but unbounded-in-time state: length generalisation reads the
  RNN at 2T and 4T. The teacher (streaming encoder) sees the full past (Tc = T); every RNN is
  read from x[0] (SMT / DMT / finetune: m_empty; BPTT: its initial memory), and DMT rolls out
  from m_empty (DMT_STAGE, lr budgets.dmt_lr(T)). Stage "finetune" continues the SMT -> DMT RNN
  by BPTT.
"""

import ml_collections

from experiments.configs import budgets, parse_int_args, smt_dmt_bptt_stages
from smt_jax.config import base_config


def get_config(arg: str = ""):
  a = parse_int_args(arg, {"T": 32, "quick": 0})
  T, quick = a["T"], a["quick"]
  c = base_config()
  c.data.name = "stack"  # Push / pop; y = popped symbol at pops.
  c.data.vocab_size = 6  # V: 5 symbols and <pop> (chance 1/5 at a pop).
  c.data.T = T  # Training length.
  c.data.kwargs = ml_collections.ConfigDict({"depth": 4, "p_push": 0.5})  # At most 4 on the stack.
  c.model.d_model = 32  # d.
  c.model.num_heads = 2  # Heads.
  c.model.mlp_ratio = 2  # MLP width 2d.
  c.model.teacher.encoder = "stream"  # All memories of a sequence in one pass.
  c.model.teacher.Tc = T  # The full past (the teacher is no longer capped by Tc = T / 2).
  c.model.rnn.depth = 1  # Updater blocks.
  c.model.rnn.hidden = 128  # Width of the MLP / GRU updaters.
  c.dmt.k = 1  # DMT from m_empty over the whole sequence regresses every rolled memory.
  c.optim.lr = 3e-3  # Peak learning rate of SMT and BPTT (DMT: DMT_STAGE).
  c.optim.warmup_steps = 20 if quick else 50  # Warmup.
  c.train.eval_every = 100  # Held-out evaluation every 100 updates.
  c.log.every = 25  # Training metrics every 25 updates.
  c.log.plot = False  # No per-run curves (the study plots).
  c.ckpt.every = 100  # Checkpoints every 100 updates.
  c.ckpt.keep = 1  # Keep only the last.
  c.eval.sections = ("read", "drift")  # Final evaluation when a study turns train.final_eval on.
  smt, dmt = (100, 50) if quick else (400, 200)  # Updates of each stage.
  c.pipeline.order = ("smt", "dmt")  # The studies choose smt,dmt / smt / bptt.
  # BPTT: at least SMT -> DMT's wall-clock (budgets). finetune (BPTT of the SMT -> DMT RNN from
  # m_empty): half BPTT's updates, so that SMT, DMT and the fine-tuning together cost about
  # BPTT's wall-clock (the study reports both).
  bptt = budgets.bptt_factor("stack", T) * (smt + dmt)
  c.pipeline.stages = smt_dmt_bptt_stages(
    smt, dmt, bptt, dmt_stage={"optim": {"lr": budgets.dmt_lr(T)}}, finetune_steps=bptt // 2
  )
  return c
