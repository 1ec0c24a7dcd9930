"""`evaluate(cfg, params, workdir)`: read, drift, length generalisation and samples of a trained
run, written to `workdir/eval.json` plus PNGs (and samples.txt for token data).
`evaluate_workdir(workdir)` does the same for a finished run's config.json and latest checkpoint."""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smt_jax.checkpointing import load_params, write_atomic
from smt_jax.config import base_config, strict, upgrade_saved
from smt_jax.data import make_dataset
from smt_jax.errors import ConfigError
from smt_jax.eval import plots
from smt_jax.eval.config import (
  SECTIONS,
  final_eval_batches,
  final_eval_key,
  image_pixels,
  resolve_eval,
)
from smt_jax.eval.drift import drift_stats, rnn_step_fn
from smt_jax.eval.measures import (
  bits,
  bits_unit,
  carried_reads,
  carry_lengths,
  format_acc,
  lag_edges,
  read_by_lag,
  read_interval,
  state_probe,
)
from smt_jax.eval.read import (
  add_stats,
  lm_read_stats,
  rnn_read_stats,
  summarize,
  teacher_read_stats,
)
from smt_jax.eval.write import samples_text, write_lm_samples, write_samples
from smt_jax.models import Models, build_models, param_counts, readout_from_decoder
from smt_jax.objectives import method_of, read_groups, read_start, reads_through_decoder

START_NAMES = {0: "m_empty", None: "initial memory"}  # Method.read_start -> its name.
# Folded into the final evaluation's key for the samples' draws: the section batches' streams
# are SECTIONS' indices, and "lags" (index 4) and "carry" read the read's batches, never their own.
WRITE_STREAM = 4
LM_READ = "transformer LM from x[0] (causal)"  # The read's name for a method without an RNN.


class _Evaluator:
  """Jitted evaluation functions of one model, and the test batches they read.

  The RNN reads through `rnn_params`, a copy of the decoder where the method table says so
  (`reads_through_decoder`), as in the trainer's evaluation. A method without a teacher (BPTT)
  reports the RNN alone.
  """

  def __init__(
    self, cfg: ml_collections.ConfigDict, params: dict, ec: ml_collections.ConfigDict, ds
  ):
    models: Models = build_models(cfg)
    self.params, self.ec, self.ds = params, ec, ds
    self.rnn_params = readout_from_decoder(params) if reads_through_decoder(cfg) else params
    method = method_of(cfg)
    self.has_teacher, self.read_start = method.has_teacher, read_start(cfg)
    self.key = final_eval_key(ec.seed)  # Of the samples (the batches: `final_eval_batches`).
    self.recurrent = method.recurrent
    if method.recurrent:
      read = lambda p, b, prefix: rnn_read_stats(models, p, b, prefix)
    else:  # The Transformer LM reads every prefix of x itself: from x[0], always.
      read = lambda p, b, prefix: lm_read_stats(models, p, b)
    self.rnn = jax.jit(read, static_argnums=2)
    self.teacher = jax.jit(lambda p, b: teacher_read_stats(models, p, b, ec.chunk))
    self.drift = jax.jit(
      lambda p, x, start, steps: drift_stats(rnn_step_fn(models, p), models, p, x, start, steps),
      static_argnums=(2, 3),
    )
    knobs = (ec.prefix, ec.write_length, ec.temperature, ec.top_k)
    if method.recurrent:
      write = lambda p, x, key: write_samples(models, p, x, key, *knobs, self.read_start)
    else:
      write = lambda p, x, key: write_lm_samples(models, p, x, key, *knobs)
    self.write = jax.jit(write)

  def batches(self, section: str, length: int, num: int, batch_size: int):
    """`final_eval_batches` of this evaluation's dataset and eval.seed."""
    return final_eval_batches(self.ds, self.ec.seed, section, length, num, batch_size)

  def read_summaries(self, section: str, length: int, prefixes: dict) -> dict:
    """{name: summarize(stats) with "bits" and "bits_per_position" (the losses in bits per
    token)} over eval.num_batches batches, for the RNN started at each prefixes {name: prefix}
    and, when there is one, for the teacher."""
    totals = {}
    for batch in self.batches(section, length, self.ec.num_batches, self.ec.batch_size):
      for name, prefix in prefixes.items():
        totals[name] = add_stats(totals.get(name), self.rnn(self.rnn_params, batch, prefix))
      if self.has_teacher:
        totals["teacher"] = add_stats(totals.get("teacher"), self.teacher(self.params, batch))
    out = {name: summarize(stats) for name, stats in totals.items()}
    for s in out.values():
      s.update(bits=bits(s["loss"]), bits_per_position=bits(s["loss_per_position"]))
    return out


def _read(ev: _Evaluator, workdir: str) -> dict:
  """The read curves, each with its 95 % interval (`read_interval`), and "roles": which curve
  is the RNN from x[0] ("rnn"), after the encoder prefix ("rnn_enc") and the teacher's."""
  ec = ev.ec
  name = f"rnn from x[0] ({START_NAMES[ev.read_start]})" if ev.recurrent else LM_READ
  roles = {"rnn": name}
  if ev.has_teacher:
    roles.update(rnn_enc=f"rnn from encoder prefix {ec.prefix}", teacher="teacher")
  starts = {roles["rnn"]: ev.read_start}
  if ev.has_teacher:
    starts[roles["rnn_enc"]] = ec.prefix
  curves = ev.read_summaries("read", ec.T, starts)
  for curve in curves.values():
    curve.update(read_interval(curve, ec.batch_size * ec.num_batches))
  plots.plot_read(curves, os.path.join(workdir, "read.png"))
  return {"T": ec.T, "prefix": ec.prefix, "curves": curves, "roles": roles, "file": "read.png"}


def _drift(ev: _Evaluator, cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  start, steps = -1, ev.ec.drift_steps  # From m_empty, as the RNN is read.
  runs = [
    ev.drift(ev.rnn_params, batch["x"], start, steps)
    for batch in ev.batches("drift", start + steps + 1, ev.ec.num_batches, ev.ec.batch_size)
  ]
  drift, one_step = (
    np.mean([np.asarray(r[k]) for r in runs], axis=0) for k in ("drift", "one_step")
  )
  plots.plot_drift(drift, one_step, start, os.path.join(workdir, "drift.png"))
  tail = max(steps // 4, 1)
  return {
    "start": start,
    "steps": steps,
    "drift": drift,
    "one_step": one_step,
    "one_step_mean": float(one_step.mean()),
    "drift_settled": float(drift[-tail:].mean()),
    "settled_over_last_steps": tail,
    "file": "drift.png",
  }


def _length(ev: _Evaluator, cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  """The RNN reads each length from x[0] (SMT / DMT: from m_empty, BPTT: from its initial
  memory); the teacher re-encodes its window."""
  start = {"rnn": ev.read_start}
  rows = [ev.read_summaries("length", n, start) for n in ev.ec.lengths]
  out = {"lengths": list(ev.ec.lengths), "train_T": cfg.data.T, "file": "length.png"}
  legends = {
    "rnn": "RNN (reads from the start)" if ev.recurrent else "Transformer LM (causal)",
    "teacher": "teacher (re-encodes its window)",
  }
  for name in rows[0]:
    out[f"{name}_acc"] = [r[name]["acc"] for r in rows]
    out[f"{name}_loss"] = [r[name]["loss"] for r in rows]
    out[f"{name}_bits"] = [r[name]["bits"] for r in rows]
  plots.plot_length(
    out["lengths"],
    {legends[name]: out[f"{name}_acc"] for name in rows[0]},
    cfg.data.T,
    os.path.join(workdir, "length.png"),
  )
  return out


def _lags(ev: _Evaluator, cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  """Accuracy by lag (`read_by_lag`) on the read's test sequences, over every lag of eval.T."""
  out = {**read_by_lag(cfg, ev.params, lag_edges(ev.ec.T)), "file": "lags.png"}
  roles = {"rnn_acc": "RNN from x[0]", "teacher_acc": "teacher"}
  accs = {name: out[role] for role, name in roles.items() if out[role] is not None}
  plots.plot_lags(out["edges"], accs, os.path.join(workdir, "lags.png"))
  return out


def _carry(ev: _Evaluator, cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  """The readout after k updates from the encoder's memory (`carried_reads`), k = 0, 1, 2, 4 ..
  eval.T, on the read's test sequences."""
  out = {**carried_reads(cfg, ev.params, carry_lengths(ev.ec.T)), "file": "carry.png"}
  plots.plot_carry(out["carries"], out["acc"], os.path.join(workdir, "carry.png"))
  return out


def _state(ev: _Evaluator, cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  """Linear probes of the stack's slots from the RNN's and the encoder's memories
  (`state_probe`), by the slot's age over every lag of eval.T."""
  out = {**state_probe(cfg, ev.params, lag_edges(ev.ec.T)), "file": "state.png"}
  lines = {
    f"{name} slot {j}": acc
    for role, name in (("rnn", "RNN from x[0]"), ("teacher", "encoder"))
    for j, acc in zip(out["slots"], out[f"{role}_acc"] or [])
  }
  plots.plot_state(out["edges"], lines, os.path.join(workdir, "state.png"))
  return out


def _write(ev: _Evaluator, workdir: str) -> dict:
  ec = ev.ec
  batch = next(ev.batches("write", ec.prefix + ec.write_length, 1, ec.num_samples))
  key = jax.random.fold_in(ev.key, WRITE_STREAM)
  samples = {
    k: np.asarray(v)
    for k, v in ev.write(ev.rnn_params, batch["x"], key).items()
    if ev.has_teacher or k != "encoder"
  }
  model = "RNN" if ev.recurrent else "LM"
  if image_pixels(ev.ds):
    path = os.path.join(workdir, "samples.png")
    labels = {
      "data": "data",
      "encoder": f"RNN after an\nencoded {ec.prefix}-pixel\nprompt",
      "prompt": f"LM after a\n{ec.prefix}-pixel\nprompt",
      "scratch": f"{model} from\nscratch\n(1-pixel prompt)",
    }
    plots.plot_image_grid(
      {labels[k]: ev.ds.decode(tokens) for k, tokens in samples.items()},
      path,
      f"Samples of the {model} (temperature {ec.temperature}, top_k {ec.top_k}); "
      "the prompt is the first pixels in raster order",
    )
  else:
    path = os.path.join(workdir, "samples.txt")
    with open(path, "w") as f:
      f.write(
        samples_text(
          ev.ds.decode,
          samples,
          {"data": ec.prefix, "encoder": ec.prefix, "prompt": ec.prefix, "scratch": 1},
        )
      )
  return {
    "file": os.path.basename(path),
    "prompt": ec.prefix,
    "length": ec.write_length,
    "temperature": ec.temperature,
    "top_k": ec.top_k,
  }


def _jsonable(tree):
  """NumPy / JAX arrays -> lists and NaN -> None, so eval.json is strict JSON."""
  if isinstance(tree, dict):
    return {k: _jsonable(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_jsonable(v) for v in tree]
  if isinstance(tree, (np.ndarray, jax.Array, np.generic)):
    return _jsonable(np.asarray(tree).tolist())
  if isinstance(tree, float) and not np.isfinite(tree):
    return None
  return tree


def evaluate(
  cfg: ml_collections.ConfigDict, params: dict, workdir: str, step: int | None = None
) -> dict:
  """Evaluates `params` on the test split of cfg.data with the knobs of cfg.eval.

  Writes into workdir, for each section in eval.sections: read.png, drift.png, length.png,
  samples.png (pixel data) or samples.txt (tokens), and lags.png; then eval.json, the summary it
  returns:
    {"step", "eval" (resolved knobs), "bits_unit" (what the "bits" entries count: bits per pixel,
    character or token), "params" ({"read_model": parameters of the model read from x[0],
    "groups": per group}), one entry per section, "files"}. Losses are in nats, "bits" the same
    losses in bits.
  eval.json is merged, not replaced: the sections of an earlier evaluation of the same step that
  this one does not run are kept (with their files; "eval" is this call's knobs), those of
  another step are dropped (they describe another checkpoint). Written atomically (a temp file,
  then a rename), so a reader or a kill never sees half of it.
  """
  ds = make_dataset(cfg.data, "test")
  ec = resolve_eval(cfg, image_pixels(ds))
  os.makedirs(workdir, exist_ok=True)
  ev = _Evaluator(cfg, jax.tree.map(jnp.asarray, params), ec, ds)
  run = {
    "read": lambda: _read(ev, workdir),
    "drift": lambda: _drift(ev, cfg, workdir),
    "length": lambda: _length(ev, cfg, workdir),
    "write": lambda: _write(ev, workdir),
    "lags": lambda: _lags(ev, cfg, workdir),
    "carry": lambda: _carry(ev, cfg, workdir),
    "state": lambda: _state(ev, cfg, workdir),
  }
  path = pathlib.Path(workdir) / "eval.json"
  earlier = _earlier_sections(path, step)
  counts = param_counts(params)
  summary = {
    "step": step,
    "eval": ec.to_dict(),
    "bits_unit": f"bits per {bits_unit(ds)}",
    "params": {"read_model": sum(counts[g] for g in read_groups(cfg)), "groups": counts},
  }
  summary.update({name: run[name]() for name in ec.sections})
  summary.update({name: v for name, v in earlier.items() if name not in summary})
  done = [name for name in SECTIONS if name in summary]
  summary["files"] = ["eval.json"] + [summary[name]["file"] for name in done]
  summary = _jsonable(summary)
  write_atomic(path, json.dumps(summary, indent=1))
  return summary


def _earlier_sections(path: pathlib.Path, step: int | None) -> dict:
  """{section: entry} of an existing eval.json of the same step; {} if there is none, it is of
  another step, or it cannot be read (it is then replaced)."""
  try:
    earlier = json.loads(path.read_text())
  except (OSError, ValueError):
    return {}
  if not isinstance(earlier, dict) or earlier.get("step") != step:
    return {}
  return {name: earlier[name] for name in SECTIONS if isinstance(earlier.get(name), dict)}


def load_run_config(workdir: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
  """workdir/config.json (written by the trainer) over the base config, with dotted `overrides`
  ({"eval.temperature": 0.0, ...}) applied; fields unknown to the base config are an error."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: --workdir must be the folder of a training run.")
  cfg = strict(base_config())
  try:
    cfg.update(upgrade_saved(json.loads(path.read_text())))
    cfg.update_from_flattened_dict(overrides or {})
  except (KeyError, TypeError) as e:
    raise ConfigError(f"{path}: {e}") from e
  return cfg


def evaluate_workdir(workdir: str, overrides: dict | None = None) -> dict:
  """`evaluate` of a run's latest checkpoint with its config (see `load_run_config`)."""
  cfg = load_run_config(workdir, overrides)
  params, step = load_params(workdir)
  return evaluate(cfg, params, workdir, step)


def format_table(summary: dict) -> str:
  """A short plain-text table of an `evaluate` summary (the sections it has)."""
  fmt = lambda v: "   n/a" if v is None else f"{v:6.3f}"
  lines = [f"evaluation at step {summary['step']}"]
  if "params" in summary:
    lines.append(f"parameters of the model read from x[0]: {summary['params']['read_model']:,}")
  if "read" in summary:
    unit = summary.get("bits_unit", "bits")
    lines.append(f"read (T={summary['read']['T']}){'':22s}  nats    acc [95 % interval]  {unit}")
    for name, curve in summary["read"]["curves"].items():
      acc = format_acc(curve["acc"], curve.get("acc_interval"))
      lines.append(f"  {name:32s} {fmt(curve['loss'])}  {acc}  {fmt(curve.get('bits'))}")
    some = next(iter(summary["read"]["curves"].values()), {})
    if "num_sequences" in some:
      lines.append(f"  ({some['num_sequences']} test sequences, {some['num_labels']} labels)")
  if "drift" in summary:
    d = summary["drift"]
    lines.append(
      f"drift from position {d['start']}: one-step MSE {d['one_step_mean']:.3g}, "
      f"rollout MSE settles at {d['drift_settled']:.3g} (last "
      f"{d['settled_over_last_steps']} of {d['steps']} steps)"
    )
  if "length" in summary:
    g = summary["length"]
    lines.append(f"length generalisation (trained at T={g['train_T']})")
    teacher = g.get("teacher_acc", [None] * len(g["lengths"]))
    lines.append(f"  {'T':>6s}  rnn_acc  teacher_acc")
    for n, r, t in zip(g["lengths"], g["rnn_acc"], teacher):
      lines.append(f"  {n:6d}  {fmt(r)}   {fmt(t)}")
  if "lags" in summary:
    g = summary["lags"]
    teacher = g["teacher_acc"] or [None] * len(g["rnn_acc"])
    lines.append("accuracy by lag (tokens back to the input token the answer repeats)")
    lines.append(f"  {'lag':>9s}  answers  rnn_acc  teacher_acc")
    for lo, hi, n, r, t in zip(g["edges"], g["edges"][1:], g["count"], g["rnn_acc"], teacher):
      lines.append(f"  {f'{lo}-{hi - 1}':>9s}  {n:7d}  {fmt(r)}   {fmt(t)}")
  if "carry" in summary:
    g = summary["carry"]
    lines.append("readout after k updates from the encoder's memory (k = 0: the teacher's own)")
    lines.append(
      f"  (the encoder's memories vary by {g['signal']:.3g} per float across sequences at a "
      "position: the distances' scale)"
    )
    lines.append(f"  {'k':>5s}  labels  acc     distance")
    for k, n, a, dist in zip(g["carries"], g["count"], g["acc"], g["distance"]):
      lines.append(f"  {k:5d}  {n:6d}  {fmt(a)}  {dist:.3g}")
  if "state" in summary:
    g = summary["state"]
    buckets = [f"{lo}-{hi - 1}" for lo, hi in zip(g["edges"], g["edges"][1:])]
    lines.append("linear probe of each stack slot (0 = top), by the slot's age + 1 in tokens")
    lines.append(f"  {'memory':8s} {'slot':>4s}  " + "  ".join(f"{b:>6s}" for b in buckets))
    for role in ("rnn", "teacher"):
      for j, acc in zip(g["slots"], g[f"{role}_acc"] or []):
        lines.append(f"  {role:8s} {j:4d}  " + "  ".join(fmt(a) for a in acc))
  if "write" in summary:
    lines.append(f"samples: {summary['write']['file']}")
  return "\n".join(lines)
