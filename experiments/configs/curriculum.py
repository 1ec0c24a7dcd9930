"""Retrieval at long T by a teacher curriculum: the streaming teacher is trained by SMT at T = 64
(2400 updates, as repro_retrieval), then continued at 128, 256, ... up to T (200 updates per
doubling: its parameters do not depend on T, positions are relative); DMT then rolls the RNN out
from m_empty over the whole length-T sequence. BPTT of the same RNN from scratch is the "bptt"
stage (not in the default order), with BPTT_UPDATES_FACTOR = 6 times the updates of all SMT and
DMT stages: at T = 128, 27600 updates, 1.13x SMT -> DMT's wall-clock at the first probe's idle
rates (BPTT 14 updates/s; SMT 2.0 at 64, 1.1 at 128; DMT 5.5); experiments/bench/rates.py later
measured BPTT at 17.0, so the credit study gives the transformer 8x there (credit.BPTT_FACTORS).
"finetune" has half.

  python experiments/run.py --config=experiments/configs/curriculum.py:T=128 --workdir=DIR

Measured (seed 0, docs/results.md): the teacher at 1.000 after the first 100 updates at
T = 128. DMT over rollouts of T >= 128 steps runs at lr 1e-3 (DMT_LR_LONG), not repro_retrieval's
3e-3: at T = 256, 3e-3 diverged (NaN at update 175) and 1e-3 gave 1.000 from x[0] from DMT update
1200; at T = 128, 3e-3 left the MLP updater at 0.891 after 2000 updates (drift 2.09 at update
100) where 1e-3 gives 1.000 from update 100, and the transformer-token updater reached 1.000 from
update 300 (3e-3) or 200 (1e-3).
"""

import ml_collections

from experiments.configs import parse_int_args, repro_retrieval

BPTT_UPDATES_FACTOR = 6  # BPTT's updates per SMT or DMT update (see above).
DMT_LR_LONG = 1e-3  # DMT's peak lr from T = 128 on (see above).


def get_config(arg: str = ""):
  T = parse_int_args(arg, {"T": 128})["T"]
  c = repro_retrieval.get_config(f"T={T}")  # The model, task and DMT / BPTT stages at T.
  base = repro_retrieval.get_config("T=64").pipeline.stages.smt  # SMT at 64: 2400 updates.
  lengths = [64]
  while lengths[-1] < T:
    lengths.append(lengths[-1] * 2)
  stages = {"smt64": {**base.to_dict(), **_at(64)}}
  for short, length in zip(lengths, lengths[1:]):
    stages[f"smt{length}"] = {
      "method": "smt",
      "train": {"num_steps": 200},
      "ckpt": {"init_from": f"smt{short}"},
      "optim": {"warmup_steps": 20},
      **_at(length),
    }
  last = f"smt{lengths[-1]}"
  rest = {name: c.pipeline.stages[name].to_dict() for name in ("dmt", "bptt", "finetune")}
  rest["dmt"]["ckpt"] = {"init_from": last}
  if T >= 128:  # Gradients through long rollouts: 3e-3 diverged at 256, stalled the MLP at 128.
    rest["dmt"]["optim"]["lr"] = DMT_LR_LONG
  updates = sum(stage["train"]["num_steps"] for stage in (*stages.values(), rest["dmt"]))
  rest["bptt"]["train"]["num_steps"] = BPTT_UPDATES_FACTOR * updates
  rest["finetune"]["train"]["num_steps"] = BPTT_UPDATES_FACTOR * updates // 2
  c.pipeline.stages = ml_collections.ConfigDict({**stages, **rest})
  c.pipeline.order = (*stages, "dmt")
  return c


def _at(length: int) -> dict:
  """The fields of an SMT stage at sequence length `length` (the full-past teacher there)."""
  return {
    "data": {"T": length},
    "model": {"teacher": {"Tc": length, "Tf": length}},
    "smt": {"n_t": 0 if length <= 64 else 32},
    "eval": {"prefix": length // 2},
  }
