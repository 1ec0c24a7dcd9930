"""Study 1, long-range credit: needle retrieval with the needle in the first half, T in
{32, 64, 128, 256}; every RNN read from x[0] (SMT -> DMT: from m_empty; BPTT: from its initial
memory), so each must store the needle and carry it to the query. SMT -> DMT with the
transformer-token and MLP updaters; BPTT of the same updaters and of a GRU, with budgets that give
each at least SMT -> DMT's wall-clock at idle rates (experiments/configs/budgets.py: the config's
factor, or the updater's own where its BPTT runs faster). The table shows both budgets, and each
verdict BPTT's share of SMT -> DMT's wall-clock (at idle rates where experiments/bench/rates.py
measured them, and as measured).
Three seeds at T = 32, one at T >= 64 (a run there costs far more). From T = 128 on, the teacher
comes from the curriculum (experiments/configs/curriculum.py: SMT at 64, then 200 updates per
doubling).

  python experiments/repro/credit.py [--quick] [--out DIR] [--jobs 2]
"""

import json
import pathlib

from experiments.configs import budgets
from experiments.repro import reporting, runner
from smt_jax.eval.measures import last_label_trace
from smt_jax.eval.suite import load_run_config

T_FULL, T_QUICK = (32, 64, 128, 256), (16, 32)
FULL_SEEDS = {32: 3}  # Default seeds per T in the full study; 1 where a run costs much more.
UPDATERS = ("transformer", "mlp")
METHODS = {"SMT→DMT": "smt,dmt", "BPTT": "bptt"}
FINETUNE, FINETUNE_ORDER = "SMT→DMT→BPTT", "smt,dmt,finetune"  # SMT -> DMT, then BPTT, ...
FINETUNE_AT = (16, 32)  # ... at these T, transformer updater: does it pass the teacher?
REFERENCE = "gru"  # BPTT of a GRU updater beside them: can BPTT learn the task with a gated cell?
TARGETS = {32: 0.9, 64: 0.9, 128: 0.7}  # SMT -> DMT read from x[0] must reach these ...
BPTT_CEILING = 0.3  # ... where BPTT at equal wall-clock stays at or below this.
CURRICULUM_FROM = 128  # From this T on, runs use curriculum.py (SMT at T alone would cost hours).


def retrieval_run(
  T: int,
  updater: str,
  order: str,
  seed: int,
  quick: bool,
  tags: dict,
  variant: str = "",
  overrides: dict = None,
) -> runner.Run:
  """A run of the retrieval pool (credit, updaters and ablations share it): repro_retrieval at T
  with `updater`, the stages of `order` ("smt,dmt" or "bptt"), and a named `variant` of extra
  overrides. SMT -> DMT runs also measure the memory spread after SMT, so that every study
  sharing the run finds what it reports. From T = CURRICULUM_FROM on, the run is curriculum.py's
  instead, its SMT stages those of the curriculum."""
  stages, teacher = order.split(","), "smt"
  config = f"repro_retrieval.py:T={T},quick={int(quick)}"
  if T >= CURRICULUM_FROM:
    config = f"curriculum.py:T={T}"
    curriculum = [s for s in runner.load_config(config).pipeline.order if s != "dmt"]
    stages = [*curriculum, *stages[1:]] if stages[0] == "smt" else stages
    teacher = curriculum[-1]
  if "bptt" in stages:
    overrides = {**bptt_budget(config, updater, T), **(overrides or {})}
  return runner.Run(
    name=f"T{T}_{updater}_{order.replace(',', '-')}{'_' + variant if variant else ''}_s{seed}",
    config=config,
    overrides={
      "pipeline.order": stages,
      "model.rnn.updater": updater,
      "train.final_eval": False,
      **(overrides or {}),
    },
    seed=seed,
    tags=tags,
    measure={"spread": teacher} if order == "smt,dmt" else {},
  )


def comparison(T: int) -> str:
  """The budgets.py comparison of the retrieval runs at T (the config they come from)."""
  return "curriculum" if T >= CURRICULUM_FROM else "retrieval"


def bptt_budget(config: str, updater: str, T: int) -> dict:
  """The override giving `updater`'s BPTT its own factor (budgets.UPDATER_FACTORS) times the SMT
  and DMT updates of `config`'s pipeline ({} where the config's factor stands)."""
  if (comparison(T), updater, T) not in budgets.UPDATER_FACTORS:
    return {}
  st = runner.load_config(config).pipeline.stages
  updates = sum(st[s].train.num_steps for s in st if st[s].method == "smt" or s == "dmt")
  return {
    "pipeline.stages.bptt.train.num_steps": budgets.bptt_factor(comparison(T), T, updater) * updates
  }


def runs(quick: bool, seeds: int) -> list:
  out = []
  for T in T_QUICK if quick else T_FULL:
    n = seeds or (1 if quick else FULL_SEEDS.get(T, 1))
    for updater in UPDATERS:
      for method, order in METHODS.items():
        out += [
          retrieval_run(
            T, updater, order, seed, quick, {"T": T, "updater": updater, "method": method}
          )
          for seed in range(n)
        ]
    if T in FINETUNE_AT:
      tags = {"T": T, "updater": UPDATERS[0], "method": FINETUNE}
      out += [retrieval_run(T, UPDATERS[0], FINETUNE_ORDER, s, quick, tags) for s in range(n)]
    out += [
      retrieval_run(
        T, REFERENCE, "bptt", seed, quick, {"T": T, "updater": REFERENCE, "method": "BPTT"}
      )
      for seed in range(n)
    ]
  return out


def report(results: list, rep: reporting.Report) -> str:
  Ts = sorted({r["run"]["tags"]["T"] for r in results})
  cells = reporting.group(results, "updater", "method", "T")
  rates = reporting.load_rates()
  rows, series = [], {}
  for (updater, method, T), rs in cells.items():
    acc = [reporting.final(r) for r in rs]
    idle = idle_wall(rs, rates)
    rows.append(
      [
        updater,
        method,
        T,
        reporting.read_from(rs[0]),
        reporting.mean_std(acc),
        reporting.mean_std([reporting.final(r, "rnn_acc_enc") for r in rs]),
        reporting.mean_std([reporting.teacher_metric(r, "teacher_acc") for r in rs]),
        reporting.run_steps(rs[0]),
        f"{reporting.mean_of([reporting.run_wall(r) for r in rs]):.0f}",
        "—" if idle is None else f"{idle:.0f}",
        len(rs),
      ]
    )
    series.setdefault(f"{method} ({updater})", []).append((T, acc))
  table = reporting.md_table(
    [
      "updater",
      "method",
      "T",
      "RNN read from",
      "RNN acc from x[0]",
      "RNN acc after enc[:T/2]",
      "teacher acc",
      "updates",
      "wall s / run",
      "wall s / run at idle rates",
      "seeds",
    ],
    rows,
  )
  plot = rep.line_plot(
    "credit.png",
    Ts,
    series,
    "T (sequence length)",
    "RNN accuracy from x[0]",
    logx=True,
    chance=1 / 7,
  )
  return (
    f"{table}\n\n{plot}\n\nChance is 1/7. Every RNN reads the whole sequence itself: SMT→DMT "
    "from m_empty, BPTT from its initial memory. 'RNN acc after enc[:T/2]' reads the SMT→DMT "
    "RNN after the encoder has read the first half (it then only carries the needle). Updates: "
    "all stages together (from T = 128 on, the curriculum's SMT at 64, 128, ... then DMT); "
    f"BPTT gets {config_factors_text()} times as many, the faster updaters "
    f"their own factors ({factors_text()}; same batch size, repro_retrieval and curriculum), "
    "and the wall-clock columns show whether it had at least SMT→DMT's: as measured (on a "
    "shared machine, inflated by whatever else ran) and at the idle rates (each stage's "
    "updates / its updates per second measured alone, experiments/bench/rates.py). SMT→DMT→BPTT "
    "fine-tunes the SMT→DMT RNN "
    "by BPTT from m_empty with half BPTT's updates. BPTT of a GRU updater is a reference: "
    "whether BPTT can learn the task at all with a gated cell.\n\n"
    f"**Verdict:** {verdict_text(cells, Ts, rates)}\n" + diagnosis(results, rep)
  )


def idle_wall(results: list, rates: dict):
  """The mean over `results` of reporting.idle_wall (None unless every run's rates are known)."""
  walls = [reporting.idle_wall(r, rates) for r in results]
  return None if None in walls else sum(walls) / len(walls)


def config_factors_text() -> str:
  """The configs' factors at the full study's T: "4 (T = 32), 14 (T = 64) or 6 (T ≥ 128)"."""
  short = [
    f"{budgets.bptt_factor(comparison(T), T)} (T = {T})" for T in T_FULL if T < CURRICULUM_FROM
  ]
  long = f"{budgets.bptt_factor('curriculum', CURRICULUM_FROM)} (T ≥ {CURRICULUM_FROM})"
  return f"{', '.join(short)} or {long}"


def factors_text() -> str:
  """budgets.UPDATER_FACTORS in words: "transformer 8 (T = 128); mlp 8 (T = 32), ..."."""
  own = budgets.UPDATER_FACTORS
  updaters = dict.fromkeys(u for _, u, _ in own)
  return "; ".join(
    f"{u} " + ", ".join(f"{f} (T = {T})" for (_, v, T), f in own.items() if v == u)
    for u in updaters
  )


def trace_of(result: dict) -> dict:
  """`last_label_trace` of an SMT -> DMT run's final RNN, cached in its stage folder."""
  stage = pathlib.Path(result["workdir"]) / "dmt"
  cache = stage / "trace.json"
  if not cache.is_file():
    cache.write_text(json.dumps(last_label_trace(load_run_config(str(stage)), str(stage))))
  return json.loads(cache.read_text())


def diagnosis(results: list, rep: reporting.Report) -> str:
  """Where the needle is held or lost along the sequence, for the SMT -> DMT runs (seed 0): a
  table at two positions per updater and T, and a plot over t / T of the transformer's."""
  runs = {
    (r["run"]["tags"]["updater"], r["run"]["tags"]["T"]): r
    for r in results
    if r["run"]["tags"]["method"] == "SMT→DMT" and r["run"]["seed"] == 0
  }
  if not runs:
    return ""
  rows, curves = [], {}
  for updater in UPDATERS:
    for i, T in enumerate(sorted(T for u, T in runs if u == updater)):
      tr = trace_of(runs[updater, T])
      half, fmt = T // 2, lambda v: "—" if v is None else f"{v:.3f}"
      rows.append(
        [updater, T]
        + [fmt(tr[k][t]) for t in (half, T - 1) for k in ("enc_acc", "rnn_acc")]
        + [f"{tr['drift'][half]:.3f}", f"{tr['drift'][-1]:.3f}"]
      )
      if updater == UPDATERS[0]:
        xs = [t / T for t in tr["t"]]
        curves[f"T={T} encoder m_t"] = (xs, tr["enc_acc"], f"C{i}--")
        curves[f"T={T} RNN m_t"] = (xs, tr["rnn_acc"], f"C{i}-")
  table = reporting.md_table(
    [
      "updater",
      "T",
      "enc m_{T/2}",
      "RNN m_{T/2}",
      "enc m_{T-1}",
      "RNN m_{T-1}",
      "drift at T/2",
      "drift at T-1",
    ],
    rows,
  )
  plot = rep.curves_plot(
    "credit_trace.png",
    curves,
    "memory position t / T (needle at 0.4-0.5)",
    "teacher decoder's accuracy on the answer",
    "The answer decoded from m_t (SMT→DMT, transformer, seed 0)",
    chance=1 / 7,
  )
  return (
    "\n\n**Where the needle is lost.** From each memory position t, the teacher's decoder "
    "predicts the answer, reading the true tokens x[t+1 .. T-1] (the query included): from the "
    "encoder's memory m_t, and from the RNN's m_t after it read x[0 .. t] from m_empty. Before "
    "the needle (t < 0.4T) the decoder can read the needle among those tokens, so the curves "
    "there measure the decoder; from T/2 on, the needle is in every memory's past and only the "
    "memory can hold it. Drift is the mean squared distance between the RNN's and the "
    f"encoder's memory.\n\n{table}\n\n{plot}\n"
  )


def verdict_text(cells: dict, Ts: list, rates: dict) -> str:
  """Per updater and T: is SMT -> DMT read from x[0] at its target (TARGETS) while BPTT of the
  same updater stays at or below BPTT_CEILING? With BPTT's share of SMT -> DMT's wall-clock,
  at the idle rates where `rates` has them, and as measured."""
  parts = []
  for updater in UPDATERS:
    for T in Ts:
      smt = reporting.mean_of([reporting.final(r) for r in cells.get((updater, "SMT→DMT", T), [])])
      bptt = reporting.mean_of([reporting.final(r) for r in cells.get((updater, "BPTT", T), [])])
      if smt != smt or bptt != bptt:
        parts.append(f"{updater}, T = {T}: not both methods finished; no verdict")
        continue
      target = TARGETS.get(T)
      met = target is not None and smt >= target and bptt <= BPTT_CEILING
      walls = [
        reporting.mean_of([reporting.run_wall(r) for r in cells[(updater, m, T)]])
        for m in ("BPTT", "SMT→DMT")
      ]
      idle = [idle_wall(cells[(updater, m, T)], rates) for m in ("BPTT", "SMT→DMT")]
      measured = f"{walls[0] / walls[1]:.2f}x"
      share = f"{measured} SMT→DMT's measured wall-clock"
      if None not in idle:
        ratio = idle[0] / idle[1]
        share = f"{ratio:.2f}x SMT→DMT's wall-clock at the idle rates, {measured} measured"
      parts.append(
        f"{updater}, T = {T}: SMT→DMT {smt:.2f}, BPTT {bptt:.2f} → "
        + (
          "no target set"
          if target is None
          else f"target (≥ {target} vs ≤ {BPTT_CEILING}) {'met' if met else 'not met'}"
        )
        + f" (BPTT had {share})"
      )
  for T in Ts:
    tuned = cells.get((UPDATERS[0], FINETUNE, T), [])
    if tuned:
      accs = [
        reporting.mean_of([reporting.final(r) for r in cells.get((UPDATERS[0], m, T), [])])
        for m in (FINETUNE, "BPTT")
      ]
      teacher = reporting.mean_of([reporting.teacher_metric(r, "teacher_acc") for r in tuned])
      verdict = reporting.finetune_verdict(*accs, teacher).rstrip(".")
      parts.append(f"{UPDATERS[0]}, T = {T}: {verdict}")
  gru = [
    reporting.mean_of([reporting.final(r) for r in cells.get((REFERENCE, "BPTT", T), [])])
    for T in Ts
  ]
  parts.append("reference, BPTT of a GRU: [" + ", ".join(f"{g:.2f}" for g in gru) + "]")
  return "; ".join(parts) + "."


STUDY = runner.Study(
  name="credit",
  title="Study 1: long-range credit from x[0] (retrieval, T = 32 … 256)",
  claim="Read from x[0], the SMT → DMT RNN stores and carries the needle over long distances "
  "where BPTT of the same RNN, given at least the same wall-clock, fails.",
  runs=runs,
  report=report,
  pool="retrieval",
)

if __name__ == "__main__":
  runner.main(STUDY)
