"""Study 5, updater architectures under SMT -> DMT on retrieval: transformer-token vs MLP vs GRU,
with the spread of the memory space each leaves (effective dimensions of the encoder's and the
RNN's memories, their per-feature spread, and the cosine similarity of different sequences'
memories). The paper reports that a GRU updater collapses the memory space.

  python experiments/repro/updaters.py [--quick] [--out DIR] [--jobs 2]
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from experiments.repro import common  # noqa: E402

UPDATERS = ("transformer", "mlp", "gru")


def runs(quick: bool, seeds: int) -> list:
  seeds = seeds or (1 if quick else 3)
  return [common.Run(f"{u}_s{seed}", f"repro_retrieval.py:quick={int(quick)}",
                     {"pipeline.order": "smt,dmt", "model.rnn.updater": u,
                      "train.final_eval": False},
                     seed, {"updater": u}, measure={"spread": "smt"})
          for u in UPDATERS for seed in range(seeds)]


def spread_rows(results: list, key: str) -> list:
  """Rows of a memory-spread table, grouped by the tag `key`."""
  rows = []
  for (value,), rs in common.group(results, key).items():
    sp = [r["stages"]["smt"]["spread"] for r in rs]
    rows.append([value, common.mean_std([common.stage_metric(r, "smt", "rnn_acc") for r in rs]),
                 common.mean_std([common.final(r) for r in rs]),
                 common.mean_std([s["encoder"]["eff_dim"] for s in sp]),
                 common.mean_std([s["rnn"]["eff_dim"] for s in sp]),
                 common.mean_std([s["encoder"]["cross_cos"] for s in sp]),
                 common.mean_std([s["rnn"]["cross_cos"] for s in sp]), len(rs)])
  return rows


SPREAD_HEADERS = ["acc after SMT", "acc after SMT→DMT", "encoder eff. dims",
                  "RNN eff. dims", "encoder cross-seq cos", "RNN cross-seq cos", "seeds"]


def report(results: list, rep: common.Report) -> str:
  rows = spread_rows(results, "updater")
  table = common.md_table(["updater"] + SPREAD_HEADERS, rows)
  dims = {r[0]: r[3] for r in rows}
  return (f"{table}\n\nEffective dimensions: participation ratio of the covariance spectrum of "
          "the memories (Z = 128 is the most; 1 = all memories on a line), measured after SMT on "
          "64 held-out sequences at every position; cross-seq cos: mean cosine similarity of "
          "different sequences' memories at the same position (1 = one memory for all).\n\n"
          f"**Verdict:** encoder effective dimensions by updater: {dims}. The GRU-collapse claim "
          "holds if the GRU row's dimensions are clearly below the others' and its cosine "
          "clearly higher.\n")


STUDY = common.Study(
    name="updaters", title="Study 5: updater architectures (transformer-token, MLP, GRU)",
    claim="Transformer-token and MLP updaters work under SMT; a GRU updater collapses the memory "
          "space.",
    runs=runs, report=report)

if __name__ == "__main__":
  common.main(STUDY)
