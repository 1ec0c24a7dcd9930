"""Study 2, state tracking: stack (push / pop), SMT -> DMT vs BPTT of the same RNN (at least
SMT -> DMT's wall-clock: experiments/configs/budgets.py), and SMT -> DMT -> BPTT: the SMT -> DMT
RNN fine-tuned by BPTT from m_empty (stage "finetune", half BPTT's updates, so about BPTT's
wall-clock in all). Does fine-tuning beat BPTT from scratch, and the teacher SMT imitates? The
SMT -> DMT runs also measure length generalisation, which study 4 (length.py) reports. A last arm
trains SMT -> DMT with the window teacher encoder instead of the streaming one: is the faster
streaming teacher as good?

  python experiments/repro/state.py [--quick] [--out DIR] [--jobs 2]
"""

from experiments.repro import reporting, runner

METHODS = {"SMT→DMT": "smt,dmt", "BPTT": "bptt", "SMT→DMT→BPTT": "smt,dmt,finetune"}
WINDOW = "SMT→DMT, window teacher"  # The streaming teacher against the window one.
# SMT -> DMT runs end with the final evaluation's length generalisation (read by study 4).
LENGTH = {"pipeline.stages.smt.train.final_eval": False, "eval.sections": ["length"]}


def runs(quick: bool, seeds: int) -> list:
  seeds = seeds or (1 if quick else 3)
  arms = [(method, order, "", {}) for method, order in METHODS.items()]
  arms.append((WINDOW, "smt,dmt", "_window", {"model.teacher.encoder": "window"}))
  return [
    runner.Run(
      name=f"{order.replace(',', '-')}{suffix}_s{seed}",
      config=f"repro_stack.py:quick={int(quick)}",
      overrides={
        "pipeline.order": order.split(","),
        **(LENGTH if method == "SMT→DMT" else {"train.final_eval": False}),
        **overrides,
      },
      seed=seed,
      tags={"method": method},
    )
    for method, order, suffix, overrides in arms
    for seed in range(seeds)
  ]


def report(results: list, rep: reporting.Report) -> str:
  rows, accs = [], {}
  by_method = {method: rs for (method,), rs in reporting.group(results, "method").items()}
  for method, rs in by_method.items():
    accs[method] = reporting.mean_of([reporting.final(r) for r in rs])
    rows.append(
      [
        method,
        reporting.read_from(rs[0]),
        reporting.mean_std([reporting.final(r) for r in rs]),
        reporting.mean_std([reporting.final(r, "rnn_loss") for r in rs]),
        reporting.mean_std([reporting.stage_metric(r, "smt", "teacher_acc") for r in rs]),
        reporting.run_steps(rs[0]),
        f"{reporting.mean_of([reporting.run_wall(r) for r in rs]):.0f}",
        len(rs),
      ]
    )
  table = reporting.md_table(
    [
      "method",
      "RNN read from",
      "RNN acc at pops",
      "RNN loss",
      "teacher acc",
      "updates",
      "wall s / run",
      "seeds",
    ],
    rows,
  )
  smt, bptt = accs.get("SMT→DMT", float("nan")), accs.get("BPTT", float("nan"))
  streamed = [r for method, rs in by_method.items() if method != WINDOW for r in rs]
  teacher = reporting.mean_of([reporting.stage_metric(r, "smt", "teacher_acc") for r in streamed])
  verdict = f"SMT→DMT {smt:.3f} vs BPTT {bptt:.3f} (chance 0.2): " + (
    "SMT→DMT is ahead (claim holds)."
    if smt > bptt + 0.02
    else "BPTT is ahead (claim does not hold)."
    if bptt > smt + 0.02
    else "no clear difference (claim holds: at least as well)."
  )
  tuned = accs.get("SMT→DMT→BPTT", float("nan"))
  if tuned == tuned:
    verdict += " " + reporting.finetune_verdict(tuned, bptt, teacher)
  if WINDOW in accs and "SMT→DMT" in accs:
    pair = {"stream": "SMT→DMT", "window": WINDOW}
    teachers = {
      k: reporting.mean_of(
        [reporting.stage_metric(r, "smt", "teacher_acc") for r in by_method[method]]
      )
      for k, method in pair.items()
    }
    verdict += " The " + reporting.stream_window_verdict(
      {k: accs[m] for k, m in pair.items()}, teachers
    )
  return (
    f"{table}\n\nAccuracy over all pops of held-out sequences of the training length, every "
    "RNN read from x[0] (SMT→DMT and its fine-tuning: from m_empty; BPTT: from its initial "
    "memory). Updates and wall-clock are per run, all stages together.\n\n**Verdict:** "
    + verdict
    + "\n"
  )


STUDY = runner.Study(
  name="state",
  title="Study 2: state tracking (stack)",
  claim="SMT → DMT trains an RNN that tracks a stack at least as well as BPTT does.",
  runs=runs,
  report=report,
  pool="stack",
)

if __name__ == "__main__":
  runner.main(STUDY)
