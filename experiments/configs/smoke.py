"""A tiny run of any method that finishes in seconds on a CPU: the tests' and CI's config.

  python experiments/run.py --config=experiments/configs/smoke.py --workdir=/tmp/smoke \
      --config.method=dmt --config.ckpt.init_from=/tmp/smt_smoke
"""

from smt_jax.config import base_config


def get_config():
  c = base_config()
  c.data.vocab_size = 8  # V: 7 symbols and the marker.
  c.data.T = 16  # Sequence length.
  c.model.d_model = 16  # d.
  c.model.num_heads = 2  # Heads (head width 8).
  c.model.mem_tokens = 2  # K.
  c.model.teacher.encoder_depth = 1  # Encoder blocks.
  c.model.teacher.Tc = 8  # Encoder window.
  c.model.teacher.Tf = 4  # Decoder future.
  c.model.rnn.depth = 1  # Updater blocks.
  c.smt.n_t = 4  # Timesteps per sequence in the SMT loss.
  c.dmt.Td = 8  # DMT rollout length.
  c.dmt.k = 2  # DMT supervision stride.
  c.optim.warmup_steps = 2  # Warmup steps.
  c.train.num_steps = 6  # Updates.
  c.train.batch_size = 8  # Sequences per update.
  c.train.eval_every = 3  # Evaluate every 3 steps.
  c.train.eval_batch_size = 8  # Held-out sequences per batch.
  c.train.eval_batches = 1  # Held-out batches.
  c.log.every = 2  # Log every 2 steps.
  c.ckpt.every = 4  # Checkpoint every 4 steps.
  c.log.plot = False  # No learning-curve PNG for smoke runs.
  c.eval.batch_size = 4  # Final evaluation: sequences per batch ...
  c.eval.num_batches = 1  # ... and batches.
  c.eval.num_samples = 2  # Samples written per start.
  return c
