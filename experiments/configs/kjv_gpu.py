"""Text at the paper's scale, for one GPU: kjv.py (SMT -> DMT beside BPTT on the King James
Bible, bytes) with the paper's model sizes (_paper.py) and sequences of 1024 bytes.

  python -m smt_jax.data.prepare kjv
  python experiments/run.py --config=experiments/configs/kjv_gpu.py --workdir=workdirs/kjv_gpu

The budgets are a starting point, not measured: SMT 20000, DMT 5000 and BPTT 20000 updates.
"""

from experiments.configs import kjv, smt_dmt_bptt_stages
from experiments.configs._paper import paper_scale


def get_config():
  c = paper_scale(kjv.get_config(), Tc=256, Tf=64)
  c.data.T = 1024  # Bytes per training sequence.
  c.smt.n_t = 64  # Random timesteps per sequence in the SMT loss (each encodes 2 windows).
  c.dmt.Td = 1023  # DMT rolls out over the whole sequence from the first byte ...
  c.dmt.k = 16  # ... regressing every 16th rolled memory onto the encoder's.
  c.bptt.remat = True  # Recompute each step in the backward pass of the 1024-step scan.
  c.train.eval_every = 1000  # Held-out evaluation every 1000 updates.
  c.log.every = 100  # Training metrics every 100 updates.
  c.ckpt.every = 1000  # Checkpoint every 1000 updates.
  c.pipeline.stages = smt_dmt_bptt_stages(20000, 5000, 20000)
  return c
