"""Retrieval at long T by a teacher curriculum: the streaming teacher is trained by SMT at T = 64
(2400 updates, as repro_retrieval), then continued at 128, 256, ... up to T (200 updates per
doubling: its parameters do not depend on T, positions are relative); DMT then rolls the RNN out
from m_empty over the whole length-T sequence, at budgets.dmt_lr(T). BPTT of the same RNN from
scratch is the "bptt" stage (not in the default order), with budgets.bptt_factor("curriculum",
T) times the updates of all SMT and DMT stages; "finetune" has half.

  python experiments/run.py --config=experiments/configs/curriculum.py:T=128 --workdir=DIR

docs/results.md (study 1) gives the teacher's accuracy per stage and DMT's at each lr tried.
"""

import ml_collections

from experiments.configs import budgets, parse_int_args, repro_retrieval


def get_config(arg: str = ""):
  T = parse_int_args(arg, {"T": 128})["T"]
  c = repro_retrieval.get_config(f"T={T}")  # The model, task and DMT stage (its lr) at T.
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
  updates = sum(stage["train"]["num_steps"] for stage in (*stages.values(), rest["dmt"]))
  rest["bptt"]["train"]["num_steps"] = budgets.bptt_factor("curriculum", T) * updates
  rest["finetune"]["train"]["num_steps"] = rest["bptt"]["train"]["num_steps"] // 2
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
