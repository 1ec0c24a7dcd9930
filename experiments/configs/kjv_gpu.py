"""Text at the paper's scale, for one GPU: kjv.py (SMT -> DMT beside BPTT and the causal
Transformer LM on the King James Bible, bytes, every model read from x[0]) with the paper's model
sizes (_paper.py) and sequences of 1024 bytes.

  python -m smt_jax.data.prepare kjv
  python experiments/run.py --config=experiments/configs/kjv_gpu.py --workdir=workdirs/kjv_gpu

The budgets are a starting point, not measured: SMT 20000, DMT 5000, BPTT 20000 and LM 20000
updates.
"""

from experiments.configs import budgets, kjv, lm_stage, smt_dmt_bptt_stages
from experiments.configs._paper import paper_scale

T = 1024  # Bytes per training sequence.


def get_config():
  c = paper_scale(kjv.get_config(), Tc=T, Tf=64)  # The stream teacher: the full past.
  c.data.T = T
  c.smt.n_dec = 64  # Memories decoded per sequence in the SMT loss (of T + 1).
  c.bptt.remat = True  # Recompute each step in the backward pass of the 1024-step scan.
  c.train.eval_every = 1000  # Held-out evaluation every 1000 updates.
  c.log.every = 100  # Training metrics every 100 updates.
  c.ckpt.every = 1000  # Checkpoint every 1000 updates.
  dmt_stage = {"optim": {"lr": budgets.dmt_lr(T)}}
  c.pipeline.stages = smt_dmt_bptt_stages(20000, 5000, 20000, dmt_stage)
  c.pipeline.stages.lm = lm_stage(20000, depth=8)  # The LM baseline at the encoder's depth.
  return c
