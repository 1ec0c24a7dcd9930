"""Study 6, ablations of SMT on retrieval (each followed by the same DMT): c_unif = 0 vs the
default (memory collapse), Tf = 1 vs the default Tf = 3T/8, and detached vs joint dynamics labels.

  python experiments/repro/ablations.py [--quick] [--out DIR] [--jobs 2]
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from experiments.repro import common  # noqa: E402
from experiments.repro.updaters import SPREAD_HEADERS, spread_rows  # noqa: E402

VARIANTS = {
    "default (c_unif 0.001, Tf 3T/8, joint labels)": {},
    "c_unif = 0": {"smt.coef_unif": 0.0},
    "Tf = 1": {"model.teacher.Tf": 1},
    "detached labels": {"smt.detach_labels": True},
}


def runs(quick: bool, seeds: int) -> list:
  seeds = seeds or (1 if quick else 3)
  out = []
  for i, (label, overrides) in enumerate(VARIANTS.items()):
    for seed in range(seeds):
      out.append(common.Run(f"v{i}_s{seed}", f"repro_retrieval.py:quick={int(quick)}",
                            {"pipeline.order": "smt,dmt", "train.final_eval": False, **overrides},
                            seed, {"variant": label}, measure={"spread": "smt"}))
  return out


def report(results: list, rep: common.Report) -> str:
  rows = spread_rows(results, "variant")
  table = common.md_table(["variant"] + SPREAD_HEADERS, rows)
  return (f"{table}\n\nColumns as in study 5. Memory collapse shows as fewer effective dimensions "
          "and a higher cross-sequence cosine than the default row.\n\n**Verdict:** see the "
          "rows against the default (first row).\n")


STUDY = common.Study(
    name="ablations", title="Study 6: ablations (c_unif, Tf, detached labels)",
    claim="Without the uniformity loss the memory collapses; a longer future (Tf > 1) and joint "
          "(not detached) labels train better memories.",
    runs=runs, report=report)

if __name__ == "__main__":
  common.main(STUDY)
