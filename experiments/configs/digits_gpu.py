"""Pixels at the paper's scale, for one GPU: digits.py (SMT -> DMT beside BPTT and the causal
Transformer LM on 8x8 digits, one whole image per 64-token sequence, every model read from x[0])
with the paper's model sizes (_paper.py).

  python -m smt_jax.data.prepare digits --levels 17
  python experiments/run.py --config=experiments/configs/digits_gpu.py --workdir=workdirs/digits_gpu

The budgets are a starting point, not measured: SMT 10000, DMT 3000, BPTT 10000 and LM 10000
updates.
"""

from experiments.configs import digits, lm_stage, smt_dmt_bptt_stages
from experiments.configs._paper import paper_scale

PREPARE = digits.PREPARE  # The stream digits.py reads (17 grey levels).


def get_config():
  c = paper_scale(digits.get_config(), Tc=64, Tf=64)  # The stream teacher sees the whole image.
  c.train.eval_every = 500  # Held-out evaluation every 500 updates.
  c.log.every = 100  # Training metrics every 100 updates.
  c.ckpt.every = 500  # Checkpoint every 500 updates.
  c.pipeline.stages = smt_dmt_bptt_stages(10000, 3000, 10000)
  c.pipeline.stages.lm = lm_stage(10000, depth=8)  # The LM baseline at the encoder's depth.
  return c
