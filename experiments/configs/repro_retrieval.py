"""Reproduction studies (experiments/repro): needle retrieval with the needle in the first half,
at any T, as an SMT -> DMT pipeline beside BPTT of the same RNN, every RNN read from x[0].

  get_config("T=64,quick=0"): T = sequence length (default 32), quick = 1 for the reduced
  `--quick` budgets. The study drivers pick the stages with pipeline.order and override fields.

Settings follow experiments/configs/default.py (T = 32): the needle marker sits in [0.4, 0.5) of
the sequence (the needle is 0.5T..0.6T tokens before the query); the teacher sees the full past
(Tc = Tf = T); SMT trains every position -1..T-1 up to T = 64 and 32 sampled positions beyond;
DMT rolls out from m_empty over the whole sequence (DMT_STAGE, lr budgets.dmt_lr(T)). Every RNN
is read from x[0] (SMT / DMT: m_empty, BPTT: its initial memory); the extra column reads the
SMT / DMT RNN after the encoder has read the first half (eval.prefix = T / 2).

The teacher is the streaming encoder (all memories of a sequence in one pass), not the window
encoder, whose DMT targets cost a window per position.

Budgets grow with T: SMT 400 updates at T = 32 and 2400 * T / 64 beyond (the teacher's; a stated
cap, not a stopping rule), DMT 2000; BPTT budgets.bptt_factor("retrieval", T) times SMT and DMT
together. docs/results.md gives the teacher's accuracy at these budgets and both wall-clocks.
"""

import ml_collections

from experiments.configs import budgets, parse_int_args, smt_dmt_bptt_stages
from smt_jax.config import base_config


def get_config(arg: str = ""):
  a = parse_int_args(arg, {"T": 32, "quick": 0})
  T, quick = a["T"], a["quick"]
  c = base_config()
  c.data.vocab_size = 8  # V: 7 symbols and the marker (chance 1/7).
  c.data.T = T  # Sequence length.
  c.data.kwargs = ml_collections.ConfigDict({"pos_lo": 0.4, "pos_hi": 0.5})  # In [0.4T, T/2).
  c.model.d_model = 32  # d.
  c.model.num_heads = 2  # Heads.
  c.model.mlp_ratio = 2  # MLP width 2d.
  c.model.teacher.encoder = "stream"  # All memories of a sequence in one pass (window: T x dearer).
  c.model.teacher.Tc = T  # The full past: m_t = E(x_0..x_t).
  c.model.teacher.Tf = T  # The needle's memory predicts the answer.
  c.model.rnn.depth = 1  # Updater blocks.
  c.model.rnn.hidden = 128  # Width of the MLP / GRU updaters' input embedding and MLP.
  c.smt.n_t = 0 if T <= 64 else 32  # Every position up to T = 64; 32 sampled ones beyond.
  c.dmt.k = 1  # DMT from m_empty over the whole sequence regresses every rolled memory.
  c.optim.lr = 3e-3  # Peak learning rate of SMT and BPTT (DMT: DMT_STAGE).
  c.optim.warmup_steps = 20 if quick else 50  # Warmup.
  c.train.eval_every = 100  # Held-out evaluation every 100 updates.
  c.log.every = 25  # Training metrics every 25 updates.
  c.log.plot = False  # No per-run curves (the study plots).
  c.ckpt.every = 100  # Checkpoints every 100 updates.
  c.ckpt.keep = 1  # Keep only the last.
  c.eval.sections = ("read", "drift")  # Final evaluation when a study turns train.final_eval on.
  c.eval.prefix = T // 2  # The extra column: the encoder reads the first half, then the RNN.
  smt = 400 if T <= 32 else 2400 * T // 64  # SMT updates: the teacher's budget (see above).
  smt, dmt = (100, 300) if quick else (smt, 2000)  # Updates of each stage.
  c.pipeline.order = ("smt", "dmt")  # The studies choose smt,dmt / smt / bptt.
  bptt = budgets.bptt_factor("retrieval", T) * (smt + dmt)  # At least SMT -> DMT's wall-clock.
  c.pipeline.stages = smt_dmt_bptt_stages(
    smt, dmt, bptt, dmt_stage={"optim": {"lr": budgets.dmt_lr(T)}}
  )
  return c
