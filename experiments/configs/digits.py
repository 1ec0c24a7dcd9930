"""Pixels: SMT, then DMT from it, beside BPTT of the same RNN, on the offline sklearn digits
(1,797 8x8 handwritten digits, each a 64-pixel raster scan, 17 grey levels on a 256-token
vocabulary) — sized to learn something visible in a few minutes on 2 CPU cores.

Prepare the data once, then run the pipeline:

  python -m smt_jax.data.prepare digits
  python experiments/run.py --config=experiments/configs/digits.py --workdir=workdirs/digits

One sequence is one whole image (T = H*W = 64; a window starts at an image boundary, and the
label of its last pixel is the first pixel of the next image). The read loss is the pixel NLL in
nats (log 256 = 5.55 untrained, 2.04 for the pixel unigram); the final evaluation draws the
bottom half of test digits after an encoded top half, and whole digits from scratch, into
WORKDIR/STAGE/samples.png.

Measured on the shared 2-core CPU (load average ~7; this process got ~0.8 core): 8.3 minutes in
all (SMT 5.6, DMT 1.4, BPTT 1.3), so ~3-4.5 minutes on an idle machine. Held-out pixel NLL
(nats) from 5.55: SMT-teacher 1.49, RNN after SMT 1.84, after DMT 1.64, BPTT 1.36; after an
encoded top half the RNN draws plausible bottom halves; from scratch only BPTT draws digits (the
SMT/DMT RNN never learns to start from its initial memory).

Paper scale (Kumar & Isola, 2026), for a GPU: model.d_model 256, model.num_heads 8,
model.mem_tokens K = 16 (Z = K·d = 4096), encoder 8 / decoder 4 / updater 8 / readout 4
blocks, Tc 256, Tf 64, train.batch_size 128, model.dtype "bfloat16"; for pixels T is a whole
image (64 here, 784 for MNIST).
"""

from experiments.configs import smt_dmt_bptt_stages
from smt_jax.config import base_config


def get_config():
  c = base_config()
  c.data.name = "digits"  # Prepared by `python -m smt_jax.data.prepare digits`.
  c.data.vocab_size = 256  # Pixel tokens 0..255 (the digits use 17 of them).

  c.smt.n_t = 16  # Random timesteps per image in the SMT loss (each encodes 2 windows); 0 = all
  #                 63, 2x the cost (paper: all positions).

  c.dmt.Td = 63  # DMT rolls out over the whole image ...
  c.dmt.start = 0  # ... from the encoder memory of the first pixel (where the RNN read starts).
  c.dmt.k = 7  # Regress every 7th rolled memory onto the encoder's (9 targets per rollout).

  c.optim.lr = 2e-3  # Peak AdamW learning rate (paper-scale models want ~3e-4).
  c.optim.warmup_steps = 50  # Linear warmup steps.
  c.train.batch_size = 16  # Images per update (paper: 128).
  c.train.eval_every = 100  # Held-out evaluation every 100 steps.
  c.train.eval_batch_size = 32  # Held-out images per batch.
  c.log.every = 25  # Training metrics every 25 steps.
  c.ckpt.every = 100  # Checkpoint every 100 steps.
  c.eval.num_batches = 2  # ... and batches.

  c.pipeline.order = (
    "smt",
    "dmt",
    "bptt",
  )  # Stages, run into WORKDIR/smt, WORKDIR/dmt, WORKDIR/bptt.
  c.pipeline.stages = smt_dmt_bptt_stages(300, 150, 400)  # Updates of each stage.
  return c
