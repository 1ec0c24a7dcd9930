"""The built-in default (`make run`): SMT, then DMT from it, beside BPTT of the same RNN, on needle
retrieval at T = 32 — sized to finish in a few minutes on 2 CPU cores.

The needle sits 16..23 tokens before the query, so the RNN must carry it across most of the
sequence; the encoder window Tc = 24 always contains it at the query.
"""

import ml_collections

from smt_jax.config import base_config


def get_config():
  c = base_config()
  c.seed = 0  # Parameters and data.
  c.data.name = "retrieval"  # `<mark> needle` in noise; a final `<mark>` asks for the needle.
  c.data.vocab_size = 16  # V: 15 symbols and the marker.
  c.data.T = 32  # Sequence length.
  c.data.kwargs = ml_collections.ConfigDict({
      "pos_lo": 0.24,  # Needle marker at position >= 7 (its value inside the query's window) ...
      "pos_hi": 0.5,  # ... and < 15: 16..23 tokens before the query.
  })

  c.model.d_model = 32  # d.
  c.model.num_heads = 2  # Heads (head width 16).
  c.model.mlp_ratio = 2  # MLP width 64.
  c.model.mem_tokens = 4  # K memory tokens.
  c.model.mem_size = 128  # Z = K * d.
  c.model.teacher.encoder_depth = 2  # Encoder blocks.
  c.model.teacher.decoder_depth = 1  # Decoder blocks.
  c.model.teacher.Tc = 24  # Encoder window: long enough to see the needle from the query.
  c.model.teacher.Tf = 8  # Future targets of the decoder.
  c.model.rnn.updater = "transformer"  # Transformer-token updater (the paper's).
  c.model.rnn.depth = 1  # Updater blocks.
  c.model.rnn.readout_depth = 1  # = decoder_depth: DMT copies the decoder into the readout.

  c.smt.n_t = 0  # Every timestep of each sequence in the SMT loss.
  c.dmt.Td = 31  # DMT rolls out over the whole sequence ...
  c.dmt.start = 0  # ... from the encoder memory at position 0 (where the RNN read starts).
  c.dmt.k = 7  # Regress every 7th rolled memory onto the encoder's.

  c.optim.lr = 2e-3  # Peak learning rate.
  c.optim.warmup_steps = 50  # Warmup steps.
  c.train.batch_size = 16  # Sequences per update.
  c.train.eval_every = 100  # Held-out evaluation every 100 steps.
  c.train.eval_batch_size = 64  # Held-out sequences per batch.
  c.train.eval_batches = 2  # Held-out batches per evaluation.
  c.log.every = 25  # Training metrics every 25 steps.
  c.ckpt.every = 100  # Checkpoint every 100 steps.

  c.pipeline.order = "smt,dmt,bptt"  # Stages, run into WORKDIR/smt, WORKDIR/dmt, WORKDIR/bptt.
  c.pipeline.stages = ml_collections.ConfigDict({
      "smt": {"method": "smt", "train": {"num_steps": 600}},  # Teacher + one-step updater.
      "dmt": {"method": "dmt", "train": {"num_steps": 200},  # On-policy rollouts ...
              "ckpt": {"init_from": "smt"}},  # ... from the SMT stage's parameters.
      "bptt": {"method": "bptt", "train": {"num_steps": 600}},  # Baseline, from scratch.
  })
  return c
