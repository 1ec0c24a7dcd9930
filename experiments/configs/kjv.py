"""Text: SMT, then DMT from it, beside BPTT of the same RNN, on the offline King James Bible
(4.1 MB of English, character level: one byte per token, vocabulary 256) — sized to learn
something visible in a few minutes on 2 CPU cores.

Prepare the data once, then run the pipeline:

  python -m smt_jax.data.prepare kjv
  python experiments/run.py --config=experiments/configs/kjv.py --workdir=workdirs/kjv

Losses are in nats per byte (bits = nats / ln 2): log 256 = 5.55 untrained, 3.00 (4.33 bits) for
the byte unigram of this text. The final evaluation writes RNN continuations of encoded test
prompts, and text from scratch, to WORKDIR/STAGE/samples.txt.

Measured on the shared 2-core CPU (load average ~5; this process got ~1 core): 14 minutes in all
(SMT 9.2, DMT 2.4, BPTT 2.3), so ~7-9 minutes on an idle machine. Held-out RNN read loss,
nats/byte (bits): SMT-teacher 2.27 (3.3), RNN after SMT 2.38, after DMT 2.07 (3.0), BPTT 1.63
(2.35); DMT samples show frequent words (and, the, thee, of, And I) among made-up ones, BPTT
samples mostly real words. The SMT teacher is the bottleneck at this budget.

Paper scale (Kumar & Isola, 2026), for a GPU: data.T 1024 (256+), model.d_model 256,
model.num_heads 8, model.mem_tokens K = 16 (Z = K·d = 4096), encoder 8 / decoder 4 /
updater 8 / readout 4 blocks, Tc 256, Tf 64, train.batch_size 128, model.dtype "bfloat16".
"""

from experiments.configs import smt_dmt_bptt_stages
from smt_jax.config import base_config


def get_config():
  c = base_config()
  c.data.name = "kjv"  # Prepared by `python -m smt_jax.data.prepare kjv`.
  c.data.vocab_size = 256  # Byte tokens (the text uses 63 of them).
  c.data.T = 128  # Bytes per training sequence (paper: 256 and more, e.g. 1024).

  c.model.teacher.Tf = 16  # Future bytes predicted by the decoder (paper: 64).

  c.smt.n_t = 32  # Random timesteps per sequence in the SMT loss (each encodes 2 windows);
  #                 0 = all 127, 2x the cost (paper: all positions).

  c.dmt.Td = 127  # DMT rolls out over the whole sequence ...
  c.dmt.start = 0  # ... from the encoder memory of the first byte (where the RNN read starts).
  c.dmt.k = 8  # Regress every 8th rolled memory onto the encoder's (15 targets per rollout).

  c.optim.lr = 2e-3  # Peak AdamW learning rate (paper-scale models want ~3e-4).
  c.optim.warmup_steps = 50  # Linear warmup steps.
  c.train.batch_size = 16  # Sequences per update (paper: 128).
  c.train.eval_every = 100  # Held-out evaluation every 100 steps.
  c.train.eval_batch_size = 32  # Held-out sequences per batch.
  c.log.every = 25  # Training metrics every 25 steps.
  c.ckpt.every = 100  # Checkpoint every 100 steps.
  c.eval.num_batches = 2  # ... and batches.

  c.pipeline.order = (
    "smt",
    "dmt",
    "bptt",
  )  # Stages, run into WORKDIR/smt, WORKDIR/dmt, WORKDIR/bptt.
  c.pipeline.stages = smt_dmt_bptt_stages(400, 200, 400)  # Updates of each stage.
  return c
