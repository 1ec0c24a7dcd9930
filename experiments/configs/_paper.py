"""The paper's model sizes (Kumar & Isola, 2026) for the *_gpu.py configs: a helper, not a
config file (no get_config)."""

import ml_collections


def paper_scale(c: ml_collections.ConfigDict, Tc: int, Tf: int) -> ml_collections.ConfigDict:
  """c with the paper's model, batch and dtype; Tc, Tf the teacher's context and future."""
  c.model.d_model = 256  # d (paper).
  c.model.num_heads = 8  # Heads of width 32.
  c.model.mlp_ratio = 4  # MLP width 4d.
  c.model.mem_tokens = 16  # K: Z = K * d = 4096.
  c.model.dtype = "bfloat16"  # Compute dtype; params and accumulation stay float32.
  c.model.teacher.encoder_depth = 8  # Encoder blocks.
  c.model.teacher.decoder_depth = 4  # Decoder blocks.
  c.model.teacher.Tc = Tc  # Encoder context.
  c.model.teacher.Tf = Tf  # Decoder future.
  c.model.rnn.depth = 8  # Updater blocks.
  c.model.rnn.readout_depth = 4  # Readout blocks (= decoder_depth: the readout copies it).
  c.train.batch_size = 128  # Sequences per update.
  c.train.eval_batch_size = 128  # Held-out sequences per batch.
  c.optim.lr = 3e-4  # Peak learning rate of SMT and BPTT at this width.
  return c
