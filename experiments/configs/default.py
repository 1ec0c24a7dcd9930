"""The built-in default (`make run`): SMT, then DMT from it, beside BPTT of the same RNN, on needle
retrieval at T = 32 — sized to finish in a few minutes on 2 CPU cores.

Task: `<mark> needle` with the marker at position 12..14 of 32 tokens, and a final `<mark>` at
position 31 asking for the needle: 16..18 tokens of noise separate the needle from the query.

How the RNN is read (the table's rnn_acc): after SMT and DMT the encoder reads the first half of
the sequence (x[0..15], which always holds the needle) and the RNN must carry the needle alone
across the 16 tokens of the second half (eval.prefix = 16); BPTT reads the whole sequence
with its own RNN from the initial memory (it has no encoder), so it must also store the needle
itself: a harder job, stated wherever the table is reported. The SMT -> DMT RNN read from the
very start (eval.prefix = 1) stays at chance at this budget: its updater does not learn to store
the needle on its own (docs/results.md).

Why these sizes (measured, docs/results.md): V = 8 (the teacher learns retrieval within 400
updates; at V = 16 it had not after 600), a needle range of 3 slots with Tc = 20 and Tf = 12 (the
encoder window holds the needle at the query, and memories from position 20 on get the needle
as a decoder target, so only a short stretch relies on the encoder generalising across t).
DMT rolls out from the encoder memory at position 15 over the 16 positions the RNN is read on
(from position 0 instead, the rollouts never hold the needle and DMT teaches the readout to
ignore the memory).
"""

import ml_collections

from experiments.configs import smt_dmt_bptt_stages
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
  c.model.teacher.Tc = 20  # Encoder window: holds the marker and needle at the query.
  c.model.teacher.Tf = 12  # Decoder future: memories from position 20 on predict the answer.
  c.model.rnn.depth = 1  # Updater blocks.

  c.dmt.start = 15  # DMT rolls out from the encoder memory at position 15 ...
  c.dmt.Td = 16  # ... over the 16 positions the RNN is read on ...
  c.dmt.k = 1  # ... regressing every rolled memory onto the encoder's.

  c.optim.lr = 3e-3  # Peak learning rate (every stage).
  c.optim.warmup_steps = 50  # Warmup steps.
  c.train.eval_every = 100  # Held-out evaluation every 100 steps.
  c.log.every = 25  # Training metrics every 25 steps.
  c.ckpt.every = 100  # Checkpoint every 100 steps.
  c.eval.prefix = 16  # SMT and DMT RNNs are read after the encoder has read x[0..15].

  c.pipeline.order = (
    "smt",
    "dmt",
    "bptt",
  )  # Stages, run into WORKDIR/smt, WORKDIR/dmt, WORKDIR/bptt.
  # SMT 400 + DMT 300 updates; BPTT as many updates of the same batch size as both together.
  c.pipeline.stages = smt_dmt_bptt_stages(400, 300, 700)
  return c
