"""Needle retrieval at the paper's scale, for one GPU: repro_retrieval.py (the studies' base
config: SMT -> DMT beside BPTT, every RNN read from x[0]) at T = 256 (get_config("T=N") for
another length) with the paper's model sizes (_paper.py); the teacher sees the full past.

  python experiments/run.py --config=experiments/configs/retrieval_gpu.py --workdir=workdirs/ret_gpu

The budgets are repro_retrieval's (updates), not re-measured at this width.
"""

from experiments.configs import parse_int_args, repro_retrieval
from experiments.configs._paper import paper_scale


def get_config(arg: str = ""):
  T = parse_int_args(arg, {"T": 256})["T"]
  c = paper_scale(repro_retrieval.get_config(f"T={T}"), Tc=T, Tf=T)
  c.data.vocab_size = 8  # The task's (the paper's sizes do not change it).
  c.model.teacher.stream_chunk = 64  # Stream encoder: 64 positions per attention block.
  c.train.batch_size = 64  # Sequences per update (attention over T + 1 memories of K tokens).
  c.train.eval_batch_size = 64  # Held-out sequences per batch.
  c.pipeline.order = ("smt", "dmt", "bptt")  # Stages.
  return c
