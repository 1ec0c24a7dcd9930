"""Study 11, scaling on text: the SMT -> DMT RNN's bits per character (read from x[0]) on KJV as
memory size (K memory tokens, Z = K * d), model width (d) and context length (T) grow, one axis
at a time around a base point, every run with the same updates (SCALING).

  python -m smt_jax.data.prepare kjv
  python experiments/repro/scaling.py [--quick] [--runs REGEX] [--report_only] [--jobs N]

Runs: kjv.py at T (its `T=` argument: the teacher's window follows it) with model.d_model and
model.mem_tokens set; the transformer-token updater; one seed. The table gives each point's
parameters of the read model, test bits per character of the RNN and of its SMT teacher,
updates, wall-clock and gradient path; one figure per axis.
"""

from experiments.repro import reporting, runner, text

BASE = {"T": 64, "d": 64, "K": 4}
AXES = {  # axis -> (swept field, values); the other fields stay at BASE.
  "memory tokens K": ("K", (1, 2, 4, 8)),
  "width d": ("d", (32, 64, 128)),
  "context T": ("T", (32, 64, 128)),
}
SCALING = {"smt": 400, "dmt": 200}  # Updates of every point (a fraction of kjv.py's budgets).
QUICK = {"smt": 10, "dmt": 5}
TOLERANCE = 0.01  # Bits per character: a step along an axis that costs more than this is a rise.


def point_name(point: dict) -> str:
  return f"kjv_T{point['T']}_d{point['d']}_K{point['K']}"


def points() -> list[dict]:
  """Every point of the sweep once (BASE lies on every axis)."""
  out = {}
  for field, values in AXES.values():
    for v in values:
      point = {**BASE, field: v}
      out[point_name(point)] = point
  return list(out.values())


def runs(quick: bool, seeds: int) -> list:
  budget = QUICK if quick else SCALING
  out = []
  for point in points():
    overrides = {
      "pipeline.order": ["smt", "dmt"],
      "model.d_model": point["d"],
      "model.mem_tokens": point["K"],
      "pipeline.stages.smt.train.num_steps": budget["smt"],
      "pipeline.stages.dmt.train.num_steps": budget["dmt"],
    }
    tags = {"data": "kjv", "updater": "transformer", "method": "SMT→DMT", **point}
    config = f"kjv.py:T={point['T']},quick={int(quick)}"
    out += [runner.Run(point_name(point), config, overrides, s, tags) for s in range(seeds or 1)]
  return out


def on_axis(results: list, field: str) -> list:
  """The runs of one axis (the others at BASE), sorted along it."""
  fixed = [k for k in BASE if k != field]
  rs = [r for r in results if all(r["run"]["tags"][k] == BASE[k] for k in fixed)]
  return sorted(rs, key=lambda r: r["run"]["tags"][field])


def rnn_bits(result: dict) -> float | None:
  """The RNN's test bits per character from x[0] (`text.test_read`), None before it finished."""
  read = text.test_read(result)
  return read and read[0]


def teacher(result: dict) -> float | None:
  """The SMT teacher's test bits per character (`text.teacher_test_read`)."""
  read = text.teacher_test_read(result)
  return read and read[0]


def trend(values: list) -> str:
  """ "falls" where every step along `values` is a decrease, "holds" where some step is not but
  none rises by more than TOLERANCE, else "rises"."""
  steps = [b - a for a, b in zip(values, values[1:])]
  if all(s < 0 for s in steps):
    return "falls"
  return "holds" if all(s <= TOLERANCE for s in steps) else "rises"


_WITHIN, _OVER = f"(within {TOLERANCE} bits)", f"by more than {TOLERANCE} bits at a step"
BITS_TREND = {  # trend of the RNN's bits -> the verdict's words.
  "falls": "falls at every step",
  "holds": f"falls or holds {_WITHIN} at every step",
  "rises": f"rises {_OVER}",
}
GAP_TREND = {  # trend of RNN - teacher -> the verdict's words.
  "falls": "narrows at every step",
  "holds": f"narrows or holds {_WITHIN} at every step",
  "rises": f"widens {_OVER}",
}


def verdict(results: list, bits_of: dict, teacher_of: dict) -> str:
  """Per axis: whether the RNN's test bits per character (`bits_of`: {run name: bits or None})
  fall at every step along it, with the values; and whether the RNN tracks its teacher
  (`teacher_of`, the same for the SMT teacher) more closely as the axis grows (its gap
  RNN - teacher narrows at every step). A step within TOLERANCE is named as such (`trend`)."""
  parts = []
  for axis, (field, _) in AXES.items():
    rs = [r for r in on_axis(results, field) if bits_of.get(r["run"]["name"]) is not None]
    if len(rs) < 2:
      continue
    bits = [bits_of[r["run"]["name"]] for r in rs]
    gaps = [b - teacher_of[r["run"]["name"]] for r, b in zip(rs, bits)]
    values = ", ".join(f"{r['run']['tags'][field]}: {b:.3f}" for r, b in zip(rs, bits))
    gap_values = ", ".join(f"{g:+.3f}" for g in gaps)
    parts.append(
      f"{axis} ({values}) — {BITS_TREND[trend(bits)]}; "
      f"RNN − teacher ({gap_values}) — {GAP_TREND[trend(gaps)]}"
    )
  return "; ".join(parts) or "not enough finished runs for a verdict"


HEADERS = ["axis", "T", "d", "K", "Z = K·d"] + text.headers(text.READ_HEADERS)[3:]


def report(results: list, rep: reporting.Report) -> str:
  rows, plots = [], []
  bits_of = {r["run"]["name"]: rnn_bits(r) for r in results}
  teacher_of = {r["run"]["name"]: teacher(r) for r in results}
  for axis, (field, values) in AXES.items():
    rs = on_axis(results, field)
    for r, row in zip(rs, text.table_rows(rs)):
      t = r["run"]["tags"]
      rows.append([axis, t["T"], t["d"], t["K"], t["K"] * t["d"]] + row[3:])
    series = {
      "RNN (SMT→DMT), from x[0]": [
        (r["run"]["tags"][field], [bits_of[r["run"]["name"]]]) for r in rs
      ],
      "SMT teacher": [(r["run"]["tags"][field], [teacher_of[r["run"]["name"]]]) for r in rs],
    }
    series = {k: [(x, v) for x, v in pts if v[0] is not None] for k, pts in series.items()}
    filename = f"{field}.png"
    plots.append(rep.line_plot(filename, list(values), series, axis, "test bits per character"))
  base = ", ".join(f"{k} = {v}" for k, v in BASE.items())
  return (
    f"{reporting.md_table(HEADERS, rows)}\n\n" + "\n\n".join(plots) + "\n\n"
    f"One axis at a time around the base point ({base}); the base point's run appears on every "
    "axis. Every point trains the same updates (SMT then DMT); test bits per character: the "
    f"RNN's read from m_empty of {text.NUM_TEST} test sequences, as study 8 reads them, with "
    "its 95 % interval over sequences; teacher bits: the SMT teacher's read of the same test "
    "sequences (the encoder's memory of each prefix, decoded with an empty future). Bits at "
    "different T average over positions of sequences of that length, so a longer context also "
    "lowers them by giving later positions more past.\n\n"
    f"**Verdict:** {verdict(results, bits_of, teacher_of)}.\n"
  )


STUDY = runner.Study(
  name="scaling",
  title="Study 11: scaling on text (KJV): memory size, width and context, read from x[0]",
  claim="SMT scales smoothly: the RNN's loss falls as memory size, model size and context length "
  "grow.",
  runs=runs,
  report=report,
  pool="realdata",
)


if __name__ == "__main__":
  runner.main(STUDY)
