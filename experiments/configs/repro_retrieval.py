"""Reproduction studies (experiments/repro): needle retrieval with the needle in the first half,
at any T, as an SMT -> DMT pipeline beside BPTT of the same RNN.

  get_config("T=64,quick=0"): T = sequence length (default 32), quick = 1 for the reduced
  `--quick` budgets. The study drivers pick the stages with pipeline.order and override fields.

Sizes follow T as in experiments/configs/default.py (T = 32): the needle marker sits in
[0.4, 0.5) of the sequence (the needle is always in the first half, about 0.5T..0.6T tokens
before the query), the encoder window Tc = 5T/8 holds it at the query, the decoder predicts the
remaining Tf = T - Tc targets. The SMT / DMT RNN is read (eval.prefix) after the encoder has
read the first half x[0 .. T/2 - 1] (which holds the needle), so it must carry the needle alone
over the second half; DMT rolls out over exactly that stretch. BPTT has no encoder: it reads
from its initial memory and must also store the needle (a harder job; the studies say so).
Budgets: BPTT gets as many updates of the same batch size as SMT and DMT together.
"""

import ml_collections

from experiments.configs import parse_int_args, smt_dmt_bptt_stages
from smt_jax.config import base_config


def get_config(arg: str = ""):
  a = parse_int_args(arg, {"T": 32, "quick": 0})
  T, quick = a["T"], a["quick"]
  c = base_config()
  c.data.vocab_size = 8  # V: 7 symbols and the marker (chance 1/7).
  c.data.T = T  # Sequence length.
  c.data.kwargs = ml_collections.ConfigDict(
    {"pos_lo": 0.4, "pos_hi": 0.5}
  )  # Marker in [0.4T, T/2).
  c.model.d_model = 32  # d.
  c.model.num_heads = 2  # Heads.
  c.model.mlp_ratio = 2  # MLP width 2d.
  c.model.teacher.Tc = -(-5 * T // 8)  # Encoder window: holds the needle at the query.
  c.model.teacher.Tf = T - c.model.teacher.Tc  # Decoder future.
  c.model.rnn.depth = 1  # Updater blocks.
  c.model.rnn.hidden = 128  # Width of the MLP / GRU updaters' input embedding and MLP.
  c.smt.n_t = 0 if T <= 32 else 16  # Every timestep up to T = 32; 16 sampled ones beyond.
  c.dmt.start = T // 2 - 1  # DMT rolls out from the encoder memory of the first half ...
  c.dmt.Td = T // 2  # ... over the second half, where the RNN is read.
  c.dmt.k = 1  # Regress every rolled memory onto the encoder's.
  c.optim.lr = 3e-3  # Peak learning rate.
  c.optim.warmup_steps = 20 if quick else 50  # Warmup.
  c.train.eval_every = 100  # Held-out evaluation every 100 updates.
  c.log.every = 25  # Training metrics every 25 updates.
  c.log.plot = False  # No per-run curves (the study plots).
  c.ckpt.every = 100  # Checkpoints every 100 updates.
  c.ckpt.keep = 1  # Keep only the last.
  c.eval.sections = ("read", "drift")  # Final evaluation when a study turns train.final_eval on.
  c.eval.prefix = T // 2  # SMT and DMT RNNs are read after the encoder has read the first half.
  smt, dmt = (100, 60) if quick else (400, 300)  # Updates of each stage.
  c.pipeline.order = ("smt", "dmt")  # The studies choose smt,dmt / smt / bptt.
  c.pipeline.stages = smt_dmt_bptt_stages(smt, dmt, smt + dmt)
  return c
