"""The built-in default (`make run`): SMT, then DMT from it, beside BPTT of the same RNN, on needle
retrieval at T = 32, every RNN read from x[0].

Task: `<mark> needle` with the marker at position 12..14 of 32 tokens, and a final `<mark>` at
position 31 asking for the needle: 16..18 tokens of noise separate the needle from the query.

How the RNNs are read (the table's rnn_acc): from x[0], with no encoder. The SMT and SMT -> DMT
RNN starts from m_empty (the encoder's memory of the empty past, trained by SMT as position -1)
and reads all 32 tokens; BPTT's RNN starts from its initial memory (zeros) and reads all 32
tokens. Both must store the needle and carry it to the query. The extra column rnn_acc_enc reads
the SMT / DMT RNN after the encoder has read x[0..15] (eval.prefix = 16): it only carries.

Why these settings (docs/results.md, "The default pipeline", has the runs behind them): the
full-past teacher (Tc = Tf = T = 32) gives the memory at the needle's step decoder pressure to
hold the needle until the query; SMT trains every position -1..31. The streaming encoder
computes all 33 memories of a sequence in one pass (tokens read causally, not bidirectionally
within a window), faster than the window encoder (study 6 compares the RNNs they train). DMT
rolls out from m_empty over the whole sequence with gradients through the rollout and trains only
the updater (the readout stays the decoder's copy): with the per-step stop-gradient it stayed at
chance. DMT gets 1000 updates, past the point where its accuracy levels off; BPTT gets
budgets.DEFAULT_BPTT_UPDATES, more than SMT -> DMT's wall-clock on idle cores (the table shows
both budgets).
"""

import ml_collections

from experiments.configs import budgets, smt_dmt_bptt_stages
from smt_jax.config import base_config


def get_config():
  c = base_config()
  c.data.vocab_size = 8  # V: 7 symbols and the marker (chance 1/7).
  c.data.T = 32  # Sequence length.
  c.data.kwargs = ml_collections.ConfigDict(
    {
      "pos_lo": 0.4,  # Needle marker at position 12, 13 or 14 (slots 12..14 of 30) ...
      "pos_hi": 0.5,  # ... so the needle is 16..18 tokens before the query at 31.
    }
  )

  c.model.d_model = 32  # d.
  c.model.num_heads = 2  # Heads (head width 16).
  c.model.mlp_ratio = 2  # MLP width 64.
  c.model.teacher.encoder = "stream"  # All 33 memories of a sequence in one pass.
  c.model.teacher.Tc = 32  # Encoder window = T: every memory sees the whole past.
  c.model.teacher.Tf = 32  # Decoder future = T: the needle's memory predicts the answer.
  c.model.rnn.depth = 1  # Updater blocks.

  c.dmt.k = 1  # DMT (from m_empty over the whole sequence) regresses every rolled memory.

  c.optim.lr = 3e-3  # Peak learning rate of SMT and BPTT (DMT: DMT_STAGE).
  c.optim.warmup_steps = 50  # Warmup steps.
  c.train.eval_every = 100  # Held-out evaluation every 100 steps.
  c.log.every = 25  # Training metrics every 25 steps.
  c.ckpt.every = 100  # Checkpoint every 100 steps.
  c.eval.prefix = 16  # The extra column: the encoder reads x[0..15], then the RNN (smt, dmt).

  c.pipeline.order = ("smt", "dmt", "bptt")  # Run into WORKDIR/smt, WORKDIR/dmt, WORKDIR/bptt.
  # SMT 400 + DMT 1000 updates; BPTT more than SMT + DMT's wall-clock; DMT's own optim and dmt
  # fields: experiments.configs.DMT_STAGE, its lr budgets.dmt_lr. SMT's RNN is not evaluated at
  # the end (it reads at chance from x[0]; its training evaluations are in the table).
  c.pipeline.stages = smt_dmt_bptt_stages(
    400, 1000, budgets.DEFAULT_BPTT_UPDATES, dmt_stage={"optim": {"lr": budgets.dmt_lr(c.data.T)}}
  )
  c.pipeline.stages.smt.train.final_eval = False
  return c
