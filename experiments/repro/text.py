"""Study 8, text: SMT -> DMT against BPTT of the same updaters, BPTT of a GRU and a causal
Transformer LM at the same width, on character-level KJV (experiments/configs/kjv.py, T = 128);
every model read from x[0]. Bits per character on held-out text, learning curves against
characters seen and wall-clock, the loss by position within the sequence, and samples.

  python -m smt_jax.data.prepare kjv
  python experiments/repro/text.py [--quick] [--runs REGEX] [--report_only] [--jobs N]

Each method gets its config's budget (kjv.py: BPTT sized to at least SMT -> DMT's wall-clock);
the table gives every run's updates and wall-clock, and each method's gradient-path length.
One seed (a run costs about an hour). The helpers here (rows, curves) serve pixels.py too.
"""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from experiments.repro import records, reporting, runner
from smt_jax.checkpointing import SUBDIR, load_params
from smt_jax.data import make_dataset
from smt_jax.eval.measures import bits, format_acc, mean_interval
from smt_jax.eval.read import lm_read_stats, rnn_read_stats, teacher_read_stats
from smt_jax.eval.suite import load_run_config
from smt_jax.models import build_models, readout_from_decoder
from smt_jax.objectives import method_of, read_start, reads_through_decoder
from smt_jax.train.loop import BEST

UPDATERS = ("transformer", "mlp")
METHODS = {"SMT→DMT": "smt,dmt", "BPTT": "bptt"}
REFERENCES = (("gru", "BPTT", "bptt"), ("transformer", "LM", "lm"))  # (updater, method, order)
TOLERANCE = 0.05  # The paper's claim: SMT -> DMT within 5 % of BPTT's bits per character.
NUM_TEST = 1024  # Test sequences of the report's read of every model ...
TEST_SEED = 20261204  # ... drawn with this key, which no run or choice used.
CHUNK = 256  # Sequences read at once.
TEACHER_CHUNK = 16  # Positions a window teacher re-encodes at once (memory: CHUNK * this windows).


def model_runs(config: str, tag: dict, seeds: int, with_lm: bool) -> list:
  """The runs of one dataset: SMT -> DMT and BPTT per updater, BPTT of a GRU and (with_lm) the
  Transformer LM; the configs' final evaluation (every section: read, drift where there
  is a teacher, length, write)."""
  combos = [(u, m, o) for u in UPDATERS for m, o in METHODS.items()]
  combos += [r for r in REFERENCES if with_lm or r[2] != "lm"]
  out = []
  for updater, method, order in combos:
    for seed in range(seeds):
      name = f"{tag['data']}_{updater}_{order.replace(',', '-')}_s{seed}"
      overrides = {"pipeline.order": order.split(","), "model.rnn.updater": updater}
      tags = {**tag, "updater": "—" if order == "lm" else updater, "method": method}
      out.append(runner.Run(name, config, overrides, seed, tags))
  return out


def runs(quick: bool, seeds: int) -> list:
  return model_runs(f"kjv.py:quick={int(quick)}", {"data": "kjv"}, seeds or 1, with_lm=True)


def stage_dir(result: dict, stage: str) -> pathlib.Path:
  return pathlib.Path(result["workdir"]) / stage


def read_dir(result: dict, best: bool = False) -> pathlib.Path:
  """The folder of the run's read model: its last stage's, or (best) that stage's best
  validation checkpoint and its evaluation (ckpt.keep_best: STAGE/best)."""
  stage = stage_dir(result, list(result["stages"])[-1])
  return stage / BEST if best else stage


def eval_json(result: dict, best: bool = False) -> dict:
  """eval.json of the run's read model (`read_dir`), {} if absent."""
  path = read_dir(result, best) / "eval.json"
  return json.loads(path.read_text()) if path.is_file() else {}


def per_sequence_bits(read, x: jax.Array, y: jax.Array) -> np.ndarray:
  """Bits per labelled token of each sequence [N]: `read(batch)` gives the position stats
  (`smt_jax.eval.read.position_stats`) of batch {"x", "y"} [1, L]; x, y [N, L] (-1 = no label)."""
  read_one = jax.jit(jax.vmap(lambda xi, yi: read({"x": xi[None], "y": yi[None]})))
  out = []
  for i in range(0, len(x), CHUNK):
    stats = read_one(x[i : i + CHUNK], y[i : i + CHUNK])
    out.append(np.asarray(stats["loss_sum"].sum(1) / stats["count"].sum(1)))
  return bits(np.concatenate(out))


def rnn_of(cfg, params: dict) -> tuple:
  """(models, parameters, read start) of the RNN a run trained, read from x[0]: from
  `read_start`, through its copy of the decoder where it reads so."""
  params = readout_from_decoder(params) if reads_through_decoder(cfg) else params
  return build_models(cfg), params, read_start(cfg)


def model_read(cfg, params: dict):
  """read(batch) -> position stats of the model a run trained, from x[0]: the RNN (`rnn_of`)
  or the Transformer LM."""
  if not method_of(cfg).recurrent:
    models = build_models(cfg)
    return lambda batch: lm_read_stats(models, params, batch)
  models, params, start = rnn_of(cfg, params)
  return lambda batch: rnn_read_stats(models, params, batch, start)


def teacher_read(cfg, params: dict):
  """read(batch) -> position stats of the run's SMT teacher: the encoder's memory of x[0..t]
  (its Tc-window) decoded with an empty future, at every t (`teacher_read_stats`; a window
  encoder re-encodes TEACHER_CHUNK positions at a time)."""
  models = build_models(cfg)
  chunk = 0 if models.streaming else TEACHER_CHUNK
  return lambda batch: teacher_read_stats(models, params, batch, chunk)


def _test_read(stage: str, checkpoints: str, teacher: bool = False) -> tuple:
  cfg = load_run_config(stage)
  params, step = load_params(checkpoints)
  params = jax.tree.map(jnp.asarray, params)
  batch = make_dataset(cfg.data, "test").sample(jax.random.key(TEST_SEED), NUM_TEST, cfg.data.T)
  x, y = (jnp.asarray(batch[k]) for k in ("x", "y"))
  read = (teacher_read if teacher else model_read)(cfg, params)
  return (*mean_interval(per_sequence_bits(read, x, y)), step)


def test_read(result: dict, best: bool = False) -> tuple | None:
  """(bits per token, its 95 % interval over sequences, checkpoint step) of the run's read
  model (`read_dir`) read from x[0] on NUM_TEST test sequences drawn with TEST_SEED; None where
  the run kept no such checkpoint. Kept in the run's report cache (records.cached)."""

  def read():
    checkpoints = read_dir(result, best)
    return _test_read(str(read_dir(result)), str(checkpoints)) if checkpoints.is_dir() else None

  which = "best" if best else "last"
  return records.cached(result, f"test_read/{which}/{NUM_TEST}/{TEST_SEED}", read)


def teacher_stage(result: dict) -> pathlib.Path | None:
  """The folder of the run's SMT teacher: its last SMT stage (None for a run without one)."""
  stages = [stage_dir(result, s) for s in result["stages"]]
  smt = [stage for stage in stages if load_run_config(str(stage)).method == "smt"]
  return smt[-1] if smt else None


def teacher_test_read(result: dict) -> tuple | None:
  """(bits per token, its 95 % interval over sequences, checkpoint step) of the run's SMT
  teacher (`teacher_stage`'s last checkpoint, `teacher_read`) on `test_read`'s test
  sequences; None for a run without an SMT stage. Kept in the run's report cache."""

  def read():
    stage = teacher_stage(result)
    return stage and _test_read(str(stage), str(stage / SUBDIR), teacher=True)

  return records.cached(result, f"teacher_test_read/{NUM_TEST}/{TEST_SEED}", read)


def main_curve(ev: dict) -> dict:
  """The read from x[0] of an eval.json (the first curve: the RNN's or the LM's)."""
  return next(iter(ev["read"]["curves"].values())) if ev.get("read") else {}


def gradient_path(result: dict) -> str:
  """Each method's longest gradient path between two tokens: the LM's decoder blocks (its
  attention reaches any earlier token in one), else the updater applications of each stage
  (reporting.gradient_path)."""
  if list(result["stages"]) == ["lm"]:
    cfg = load_run_config(str(stage_dir(result, "lm")))
    return f"{cfg.model.teacher.decoder_depth} blocks (attention)"
  return reporting.gradient_path(result)


def learning_curve(
  result: dict, tokens_per_update: int, rates: dict | None = None
) -> tuple[list, list, list]:
  """(tokens seen, wall-clock s, bits per token of the read from x[0]) at each held-out
  evaluation of the read model, over the run's stages in order (SMT -> DMT: the RNN after SMT,
  then after DMT, with DMT's updates and wall-clock after SMT's). With `rates` (idle updates/s,
  reporting.load_rates) holding every stage of the run, the wall-clock is the idle-rate one
  (updates / rate, stage after stage), which other processes on the machine do not inflate."""
  keys = [reporting.rate_key(result["run"]["name"], s) for s in result["stages"]]
  idle = rates is not None and all(k in rates for k in keys)
  seen, wall, bits = [], [], []
  offset_steps, offset_wall = 0, 0.0
  for stage, key in zip(result["stages"], keys):
    rows = [json.loads(r) for r in (stage_dir(result, stage) / "metrics.jsonl").open()]
    elapsed = {r["step"]: r["elapsed_s"] for r in rows if r["split"] == "train"}
    for r in (r for r in rows if r["split"] == "eval"):
      seen.append((offset_steps + r["step"]) * tokens_per_update)
      at = r["step"] / rates[key] if idle else elapsed.get(r["step"], math.nan)
      wall.append(offset_wall + at)
      bits.append(r["rnn_loss"] / math.log(2))
    steps = result["stages"][stage]["steps"]
    offset_steps += steps
    offset_wall += steps / rates[key] if idle else result["stages"][stage]["wall_s"]
  return seen, wall, bits


def has_idle_rates(results: list, rates: dict) -> bool:
  """Whether `rates` holds every stage of every run of `results`."""
  return all(reporting.idle_wall(r, rates) is not None for r in results)


def read_at_wall(result: dict, wall_s: float, rates: dict | None = None):
  """(bits per token, update) of the run's last validation read at or before `wall_s` seconds
  of its `learning_curve` (idle-rate seconds with `rates`); None before its first read."""
  updates, wall, bits = learning_curve(result, 1, rates)
  return _last_read(wall, wall_s, bits, updates)


def read_at_updates(result: dict, num_updates: int):
  """(bits per token, update) of the run's last validation read at or before `num_updates`
  updates over its stages; None before its first read. The studies' stages share one
  train.batch_size (real_data_config), so equal updates are equal data seen."""
  updates, _, bits = learning_curve(result, 1)
  return _last_read(updates, num_updates, bits, updates)


def _last_read(xs: list, limit: float, bits: list, updates: list):
  before = [i for i, x in enumerate(xs) if x <= limit]
  return (bits[before[-1]], updates[before[-1]]) if before else None


def reads_at_equal_wall(smt: dict, bptt: dict) -> dict:
  """SMT -> DMT's last validation read and BPTT's last one within SMT -> DMT's wall-clock, both
  at the idle rates where experiments/bench/rates.py measured every stage of both runs (runs
  that shared the machine unevenly are then still compared at equal time), else measured:
  {"wall_s", "idle" (bool), "smt" (bits), "bptt" ((bits, update) or None before its first read)}."""
  rates = reporting.load_rates()
  idle = has_idle_rates([smt, bptt], rates)
  rates = rates if idle else None
  wall = reporting.idle_wall(smt, rates) if idle else reporting.run_wall(smt)
  smt_read = learning_curve(smt, 1, rates)[2][-1]
  return {"wall_s": wall, "idle": idle, "smt": smt_read, "bptt": read_at_wall(bptt, wall, rates)}


def equal_wall_reads(smt: dict, bptt: dict) -> str:
  """`reads_at_equal_wall` in words."""
  at = reads_at_equal_wall(smt, bptt)
  budget = f"wall-clock ({at['wall_s']:.0f} s, {'idle rates' if at['idle'] else 'measured'})"
  return _reads_words(budget, at["smt"], at["bptt"])


def equal_data_reads(smt: dict, bptt: dict) -> str:
  """The paper's data-efficiency read in words: SMT -> DMT's last validation read beside BPTT's
  last one within as many updates (`read_at_updates`: the same data seen)."""
  updates, _, bits = learning_curve(smt, 1)
  budget = f"{updates[-1]} updates (the same images seen)"
  return _reads_words(budget, bits[-1], read_at_updates(bptt, updates[-1]))


def _reads_words(budget: str, smt_read: float, bptt_read) -> str:
  """SMT -> DMT's read and BPTT's ((bits, update) or None) at SMT -> DMT's `budget`."""
  bptt = f"{bptt_read[0]:.3f} (update {bptt_read[1]})" if bptt_read else "— (no read yet)"
  return f"at SMT→DMT's {budget} the validation reads are SMT→DMT {smt_read:.3f}, BPTT {bptt}"


def read_columns(result: dict) -> list[str]:
  """The table's read of a text run: `test_read` of its last and its best validation
  checkpoint."""
  read = test_read(result)
  return [format_acc(*read[:2]) if read else "—", best_read(result)]


READ_HEADERS = ["test bits/token from x[0] [95 %]", "at best validation [95 %] (update)"]


def table_rows(results: list, reads=read_columns, teacher=None) -> list:
  """One row per run: data, updater, method, read from, the `reads(result)` columns, the
  teacher's test read (`teacher(result)`, default `teacher_column`), parameters of the read
  model, updates, measured wall-clock, wall-clock at the idle rates (reporting.idle_wall; '—'
  where experiments/bench/rates.py has not measured every stage) and gradient path."""
  teacher = teacher or teacher_column
  rates = reporting.load_rates()
  rows = []
  for r in results:
    ev, tags = eval_json(r), r["run"]["tags"]
    rows.append(
      [tags["data"], tags["updater"], tags["method"], reporting.read_from(r)]
      + reads(r)
      + [
        teacher(r),
        f"{ev.get('params', {}).get('read_model', 0):,}",
        reporting.run_steps(r),
        f"{reporting.run_wall(r):.0f}",
        reporting.seconds(reporting.idle_wall(r, rates)),
        gradient_path(r),
      ]
    )
  return rows


def headers(reads: list) -> list[str]:
  """The table's headers around the read columns `reads`."""
  return ["data", "updater", "method", "read from", *reads] + [
    "teacher test bits [95 %]",
    "params (read model)",
    "updates",
    "wall s",
    "idle s",
    "gradient path",
  ]


def teacher_column(result: dict) -> str:
  """The table's teacher read: `teacher_test_read`, with its interval ("—" without a teacher)."""
  read = teacher_test_read(result)
  return format_acc(*read[:2]) if read else "—"


def best_read(result: dict) -> str:
  """`test_read` of the run's best validation checkpoint, with its update ("—" where the run
  kept none)."""
  read = test_read(result, best=True)
  return f"{format_acc(*read[:2])} ({read[2]})" if read else "—"


def fmt(v) -> str:
  return "—" if v is None or not math.isfinite(v) else f"{v:.3f}"


def curves_plots(results: list, rep: reporting.Report, prefix: str, unit: str) -> str:
  """Learning curves of every run (bits per `unit` from x[0]) against tokens seen and against
  wall-clock (at the idle rates where every run's are measured), each on one plot."""
  rates = reporting.load_rates()
  rates = rates if has_idle_rates(results, rates) else None
  by_seen, by_wall = {}, {}
  for i, r in enumerate(results):
    cfg = runner.run_config(runner.Run(**r["run"]))
    seen, wall, bits = learning_curve(r, cfg.train.batch_size * cfg.data.T, rates)
    label = f"{r['run']['tags']['method']} ({r['run']['tags']['updater']})"
    by_seen[label] = (seen, bits, f"C{i % 10}.-")
    by_wall[label] = (wall, bits, f"C{i % 10}.-")
  ylabel = f"bits per {unit} from x[0]"
  return (
    rep.curves_plot(f"{prefix}_by_{unit}s.png", by_seen, f"{unit}s seen", ylabel, "against data")
    + "\n\n"
    + rep.curves_plot(
      f"{prefix}_by_wall.png",
      by_wall,
      "wall-clock s at idle rates" if rates else "wall-clock s (measured)",
      ylabel,
      "against time",
    )
  )


def position_plot(results: list, rep: reporting.Report, filename: str, unit: str) -> str:
  """Bits per `unit` at each position of the sequence, per run (does the model keep using its
  context as the sequence grows?)."""
  curves = {}
  for i, r in enumerate(results):
    per = main_curve(eval_json(r)).get("bits_per_position") or []
    label = f"{r['run']['tags']['method']} ({r['run']['tags']['updater']})"
    curves[label] = (list(range(len(per))), per, f"C{i % 10}.-")
  return rep.curves_plot(filename, curves, "position t", f"bits per {unit}", "loss by position")


def verdict(results: list, read=None) -> str:
  """Per updater, the paper's claim at equal wall-clock: SMT -> DMT's validation read within
  TOLERANCE of BPTT's at SMT -> DMT's wall-clock (`reads_at_equal_wall`); beside it each
  one's test read (`read(result, best)`, default `test_read`) at its end and at its best
  validation checkpoint where both kept one; and where the LM is."""
  read = read or test_read
  by = {(r["run"]["tags"]["updater"], r["run"]["tags"]["method"]): r for r in results}
  parts = []
  for u in UPDATERS:
    smt, bptt = by.get((u, "SMT→DMT")), by.get((u, "BPTT"))
    ends = (read(smt), read(bptt)) if smt and bptt else (None,)
    if None in ends:
      continue
    at = reads_at_equal_wall(smt, bptt)
    ok = at["bptt"] is not None and at["smt"] <= at["bptt"][0] * (1 + TOLERANCE)
    part = (
      f"{u}: {equal_wall_reads(smt, bptt)} — "
      + ("within" if ok else "not within")
      + f" {TOLERANCE:.0%} (the paper's claim {'holds' if ok else 'does not hold'} here); test "
      f"reads at their ends SMT→DMT {ends[0][0]:.3f} in {reporting.run_wall(smt):.0f} s, "
      f"BPTT {ends[1][0]:.3f} in {reporting.run_wall(bptt):.0f} s"
    )
    best_a, best_b = read(smt, best=True), read(bptt, best=True)
    if best_a and best_b:
      part += f"; at their best validation checkpoints {best_a[0]:.3f} vs {best_b[0]:.3f}"
    parts.append(part)
  lm_read = read(by[("—", "LM")]) if ("—", "LM") in by else None
  if lm_read:
    parts.append(f"the Transformer LM reads {lm_read[0]:.3f}")
  return "; ".join(parts) or "not enough finished runs for a verdict"


def samples(results: list, lines: int = 4) -> str:
  """The first `lines` lines of each RNN run's samples.txt (fixed prompts: eval.seed)."""
  out = []
  for r in results:
    path = stage_dir(r, list(r["stages"])[-1]) / "samples.txt"
    if path.is_file():
      head = path.read_text().splitlines()[:lines]
      out.append(f"**{r['run']['name']}**\n\n```\n" + "\n".join(head) + "\n```")
  return "\n\n".join(out)


def report(results: list, rep: reporting.Report) -> str:
  table = reporting.md_table(headers(READ_HEADERS), table_rows(results))
  return (
    f"{table}\n\n{curves_plots(results, rep, 'kjv', 'character')}\n\n"
    f"{position_plot(results, rep, 'kjv_by_position.png', 'character')}\n\n"
    "Every model reads the whole held-out sequence itself: SMT→DMT from m_empty, BPTT from its "
    "initial memory, the LM by causal attention over the prefix. Test bits per character: "
    f"the mean over {NUM_TEST} test sequences (the second half of the held-out text, which no "
    f"validation read used; drawn with key {TEST_SEED}, which no run or choice used) of each "
    "sequence's nats / ln 2 per character, with its 95 % interval over sequences, read by the "
    "report from the run's last checkpoint; 'at best validation': the same read of the "
    "checkpoint with the lowest validation read (ckpt.keep_best; '—' for a run that kept "
    "none), where early stopping would have kept the run; teacher test bits: the SMT teacher's "
    "read of the same test sequences (at every position the encoder's memory of the prefix, "
    "decoded with an empty future), with its interval. Updates and wall-clock: all stages of "
    "the run.\n\n"
    f"**Verdict:** {verdict(results)}.\n\n**Samples** (prompt || continuation):\n\n"
    f"{samples(results)}\n"
  )


STUDY = runner.Study(
  name="text",
  title="Study 8: text (KJV), every model read from x[0]",
  claim="On character-level text SMT → DMT is on a par with BPTT (within 5 % of its bits per "
  "character at equal wall-clock); a Transformer LM at the same width is the reference.",
  runs=runs,
  report=report,
  pool="realdata",
)


if __name__ == "__main__":
  runner.main(STUDY)
