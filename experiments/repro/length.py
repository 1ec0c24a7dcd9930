"""Study 4, length generalisation: the SMT -> DMT RNN vs its Transformer teacher on the stack at
lengths T, 2T and 4T (trained at T). The RNN reads from x[0] (from m_empty); the
teacher re-encodes its Tc-window at every position, so it never sees more than Tc tokens.

  python experiments/repro/length.py [--quick] [--out DIR] [--jobs 2]
"""

from experiments.repro import reporting, runner, state


def runs(quick: bool, seeds: int) -> list:
  """Study 2's SMT -> DMT runs (the same runs: they measure length generalisation)."""
  return [r for r in state.runs(quick, seeds) if r.tags["method"] == "SMT→DMT"]


def report(results: list, rep: reporting.Report) -> str:
  if not results:
    return "No finished runs.\n"
  lengths = results[0]["stages"]["dmt"]["length"]["lengths"]
  rnn = [[r["stages"]["dmt"]["length"]["rnn_acc"][i] for r in results] for i in range(len(lengths))]
  tea = [
    [r["stages"]["dmt"]["length"]["teacher_acc"][i] for r in results] for i in range(len(lengths))
  ]
  rows = [
    [n, reporting.mean_std(rnn[i]), reporting.mean_std(tea[i])] for i, n in enumerate(lengths)
  ]
  table = reporting.md_table(["length", "RNN (SMT→DMT) acc", "teacher acc"], rows)
  plot = rep.line_plot(
    "length.png",
    lengths,
    {"RNN (SMT→DMT)": list(zip(lengths, rnn)), "Transformer teacher": list(zip(lengths, tea))},
    "test length",
    "accuracy at pops",
    logx=True,
  )
  r_drop = reporting.mean_of(rnn[0]) - reporting.mean_of(rnn[-1])
  t_drop = reporting.mean_of(tea[0]) - reporting.mean_of(tea[-1])
  verdict = (
    f"from {lengths[0]} to {lengths[-1]} tokens the RNN's accuracy changes by "
    f"{-r_drop:+.3f} and the teacher's by {-t_drop:+.3f}; the claim (the RNN "
    f"generalises at least as well as its teacher) "
    + ("holds here." if r_drop <= t_drop + 0.02 else "does not hold here.")
  )
  return f"{table}\n\n{plot}\n\n**Verdict:** {verdict}\n"


STUDY = runner.Study(
  name="length",
  title="Study 4: length generalisation (stack)",
  claim="The SMT → DMT RNN keeps its accuracy past the training length, as well as or better "
  "than its Transformer teacher.",
  runs=runs,
  report=report,
  pool="stack",
)

if __name__ == "__main__":
  runner.main(STUDY)
