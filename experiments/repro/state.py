"""Study 2, state tracking: stack (push / pop), SMT -> DMT vs BPTT of the same RNN at an equal
budget (BPTT gets as many updates of the same batch size as SMT and DMT together). The SMT -> DMT
runs also measure length generalisation, which study 4 (length.py) reports from the same runs.

  python experiments/repro/state.py [--quick] [--out DIR] [--jobs 2]
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from experiments.repro import common  # noqa: E402

METHODS = {"SMT→DMT": "smt,dmt", "BPTT": "bptt"}


def runs(quick: bool, seeds: int) -> list:
  seeds = seeds or (1 if quick else 3)
  return [common.Run(name=f"{order.replace(',', '-')}_s{seed}",
                     config=f"repro_stack.py:quick={int(quick)}",
                     overrides={"pipeline.order": order, "train.final_eval": False},
                     seed=seed, tags={"method": method},
                     measure={"length": "dmt"} if order == "smt,dmt" else {})
          for method, order in METHODS.items() for seed in range(seeds)]


def report(results: list, rep: common.Report) -> str:
  rows, accs = [], {}
  for (method,), rs in common.group(results, "method").items():
    accs[method] = common.mean_of([common.final(r) for r in rs])
    rows.append([method, common.mean_std([common.final(r) for r in rs]),
                 common.mean_std([common.final(r, "rnn_loss") for r in rs]),
                 common.mean_std([common.stage_metric(r, "smt", "teacher_acc") for r in rs]),
                 common.run_steps(rs[0]), f"{common.mean_of([common.run_wall(r) for r in rs]):.0f}",
                 len(rs)])
  table = common.md_table(["method", "RNN acc at pops", "RNN loss", "teacher acc", "updates",
                           "wall s / run", "seeds"], rows)
  smt, bptt = accs.get("SMT→DMT", float("nan")), accs.get("BPTT", float("nan"))
  teacher = common.mean_of([common.stage_metric(r, "smt", "teacher_acc") for r in results])
  verdict = (f"SMT→DMT {smt:.3f} vs BPTT {bptt:.3f} (chance 0.2): "
             + ("SMT→DMT is ahead (claim holds)." if smt > bptt + 0.02 else
                "BPTT is ahead (claim does not hold)." if bptt > smt + 0.02 else
                "no clear difference (claim holds: at least as well)."))
  if teacher < bptt:
    verdict += (f" The SMT→DMT RNN imitates a teacher that itself reaches only {teacher:.3f}: "
                "its encoder sees the last Tc tokens, and older pushes can be on the stack.")
  return (f"{table}\n\nAccuracy over all pops of held-out sequences of the training length, "
          "the RNN read from the start.\n\n**Verdict:** " + verdict + "\n")


STUDY = common.Study(
    name="state", title="Study 2: state tracking (stack)",
    claim="SMT → DMT trains an RNN that tracks a stack at least as well as BPTT does.",
    runs=runs, report=report, pool="stack")

if __name__ == "__main__":
  common.main(STUDY)
