"""Up-front validation of a whole run config: every check names the field and the fix.

`validate(cfg)` runs before anything compiles (the trainer and the pipeline call it);
`validate_model(cfg)` checks only what the models and objectives read.
"""

import jax
import ml_collections

from smt_jax.checkpointing import checkpoint_dir
from smt_jax.data import SYNTHETIC_NAMES, TASK_NAMES, make_dataset
from smt_jax.errors import ConfigError
from smt_jax.eval.config import image_pixels, resolve_eval
from smt_jax.models import ENCODER_NAMES, GROUPS, UPDATER_NAMES
from smt_jax.objectives import METHODS
from smt_jax.objectives.bptt import BPTT_STARTS
from smt_jax.objectives.solvers import SOLVERS
from smt_jax.parallel import mesh_shape
from smt_jax.train import tensorboard
from smt_jax.train.optimizer import SCHEDULES

DTYPES = ("float32", "bfloat16", "float64")
# train.stop_at_metric: evaluation accuracies (the "_sure" ones only on synthetic tasks).
STOP_METRICS = ("", "teacher_acc", "rnn_acc", "teacher_acc_sure", "rnn_acc_sure")
BEST_METRICS = ("", "rnn_loss", "rnn_acc", "teacher_loss", "teacher_acc")  # ckpt.keep_best


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def validate_model(cfg: ml_collections.ConfigDict) -> None:
  """Checks the fields the models and objectives read; raises ConfigError naming the field."""
  m, t, r = cfg.model, cfg.model.teacher, cfg.model.rnn
  _require(cfg.method in METHODS, f"method={cfg.method!r} is unknown; use one of {tuple(METHODS)}.")
  _require(m.dtype in DTYPES, f"model.dtype={m.dtype!r} is unknown; use one of {DTYPES}.")
  _require(
    m.head_dim or m.d_model % m.num_heads == 0,
    f"model.d_model={m.d_model} must be divisible by model.num_heads={m.num_heads} "
    "(or set model.head_dim).",
  )
  _require(
    m.head_dim or (m.d_model // m.num_heads) % 2 == 0,
    f"model.d_model / model.num_heads = {m.d_model // m.num_heads} must be even (rotary "
    "positions rotate feature pairs).",
  )
  _require(m.head_dim >= 0, f"model.head_dim={m.head_dim} must be >= 0 (0 = d_model / num_heads).")
  head_dim = m.head_dim or m.d_model // m.num_heads
  rotary = head_dim * m.rotary_fraction
  _require(
    0 < m.rotary_fraction <= 1 and rotary == int(rotary) and int(rotary) % 2 == 0,
    f"model.rotary_fraction={m.rotary_fraction} must be in (0, 1] and rotate an even number of "
    f"the {head_dim} features of a head.",
  )
  _require(
    r.updater in UPDATER_NAMES,
    f"model.rnn.updater={r.updater!r} is unknown; use one of {UPDATER_NAMES}.",
  )
  _require(cfg.data.vocab_size >= 2, f"data.vocab_size={cfg.data.vocab_size} must be >= 2.")
  T = cfg.data.T
  _require(
    1 <= t.Tc <= T,
    f"model.teacher.Tc={t.Tc} must be in [1, data.T = {T}] (Tc = T: every memory sees the "
    "whole past).",
  )
  _require(1 <= t.Tf <= T, f"model.teacher.Tf={t.Tf} must be in [1, data.T = {T}].")
  _require(
    t.encoder in ENCODER_NAMES,
    f"model.teacher.encoder={t.encoder!r} is unknown; use one of {ENCODER_NAMES}.",
  )
  _require(
    t.stream_chunk >= 0, f"model.teacher.stream_chunk={t.stream_chunk} must be >= 0 (0 = Tc)."
  )
  _require(t.buckets >= 1, f"model.teacher.buckets={t.buckets} must be >= 1 (1 = no bucketing).")
  _require(
    0 <= cfg.smt.n_dec <= T + 1 and (cfg.smt.n_dec == 0 or cfg.smt.n_t == 0),
    f"smt.n_dec={cfg.smt.n_dec} must be 0 (decode every memory) or in [1, data.T + 1] (positions "
    f"-1..T-1), and only with smt.n_t = 0 (it is {cfg.smt.n_t}).",
  )
  _require(
    0 <= cfg.smt.n_t <= T,
    f"smt.n_t={cfg.smt.n_t} must be in [0, data.T = {T}] (positions sampled from -1..T-2; 0 "
    "trains every position -1..T-1).",
  )
  _require(
    cfg.smt.timestep == -1 or 0 <= cfg.smt.timestep <= cfg.data.T - 2,
    f"smt.timestep={cfg.smt.timestep} must be -1 (use smt.n_t) or in [0, data.T - 2].",
  )
  d = cfg.dmt
  _require(
    -1 <= d.start <= T - 2,
    f"dmt.start={d.start} must be -1 (m_empty, before x[0]) or a position in "
    f"[0, data.T - 2 = {T - 2}].",
  )
  _require(
    d.Td >= 1 or (d.Td == 0 and not d.random_start),
    f"dmt.Td={d.Td} must be >= 1 (or 0 = to the end of the sequence, without dmt.random_start).",
  )
  start = -1 if d.random_start else d.start
  _require(
    d.Td <= T - 1 - start,
    f"dmt.Td={d.Td} must be <= data.T - 1 - dmt.start = {T - 1 - start}"
    + (" (random starts begin at -1)." if d.random_start else "."),
  )
  td = d.Td or T - 1 - start
  _require(1 <= d.k <= td, f"dmt.k={d.k} must be in [1, dmt.Td = {td}].")
  _require(
    "backprop_through_rollout" not in d,
    "dmt.backprop_through_rollout was replaced by dmt.grad_steps: set dmt.grad_steps=0 for "
    "True (the whole rollout), 1 for False (a stop-gradient before every update).",
  )
  _require(
    d.grad_steps >= 0,
    f"dmt.grad_steps={d.grad_steps} must be >= 0 (0 = through the whole rollout, g >= 1 = at "
    "most g updates).",
  )
  _require(
    cfg.bptt.start in BPTT_STARTS,
    f"bptt.start={cfg.bptt.start!r} is unknown; use one of {BPTT_STARTS}.",
  )
  for field, value in (("dmt", d.solver), ("bptt", cfg.bptt.solver), ("eval", cfg.eval.solver)):
    _require(value in SOLVERS, f"{field}.solver={value!r} is unknown; use one of {SOLVERS}.")
  _require(
    d.solver == "scan" or d.grad_steps in (0, 1),
    f"dmt.grad_steps={d.grad_steps} truncates the scan's gradient; dmt.solver={d.solver!r} "
    "differentiates the whole rollout: use dmt.grad_steps 0 or 1, or dmt.solver=scan.",
  )
  n = cfg.newton
  _require(n.max_iters >= 1, f"newton.max_iters={n.max_iters} must be >= 1.")
  _require(n.tol > 0, f"newton.tol={n.tol} must be > 0 (a residual in memory units).")
  _require(n.damping >= 0, f"newton.damping={n.damping} must be >= 0 (0 = plain Newton).")
  _require(n.chunk >= 0, f"newton.chunk={n.chunk} must be >= 0 (0 = all Jacobian columns).")
  _require(
    cfg.method != "lm" or not t.shared_embed,
    "method='lm' trains the decoder alone as a causal Transformer LM, so it needs its own token "
    "embedding: set model.teacher.shared_embed=False.",
  )
  _require(
    not r.readout_from_decoder or r.readout_depth == t.decoder_depth,
    f"model.rnn.readout_from_decoder copies the decoder into the readout, so "
    f"model.rnn.readout_depth={r.readout_depth} must equal model.teacher.decoder_depth="
    f"{t.decoder_depth}; or set model.rnn.readout_from_decoder=False.",
  )


def _check_task_length(cfg: ml_collections.ConfigDict, dataset, lengths: list) -> None:
  """A synthetic task's own length rule (`check_length`) at each (field, T) of `lengths`."""
  if cfg.data.name not in SYNTHETIC_NAMES:
    return
  for field, T in lengths:
    try:
      dataset.check_length(T, field)
    except ValueError as e:
      raise ConfigError(f"{e}.") from e


def _check_whole_images(cfg: ml_collections.ConfigDict, dataset, ec) -> None:
  """Pixel data: every sequence the run samples (training, read, length, drift) is whole images,
  so none cuts an image mid-way or is mostly the black border of its first rows."""
  pixels = image_pixels(dataset)
  if not pixels:
    return
  tok, name = dataset.tokenizer, cfg.data.name
  lengths = [("data.T", cfg.data.T), ("eval.T", ec.T), ("eval.drift_steps", ec.drift_steps)]
  lengths += [("eval.lengths", n) for n in ec.lengths]
  for field, n in lengths:
    _require(
      n % pixels == 0,
      f"{field}={n} cuts the {tok.height}x{tok.width} = {pixels}-pixel images of data.name="
      f"{name!r} mid-way (a pixel sequence is whole images; a short window would be mostly the "
      f"black border): use a multiple of {pixels} ({pixels} = one image), or downsample the "
      f"images (`python -m smt_jax.data.prepare {name} --size S --levels L`, then T = S*S).",
    )


def validate(cfg: ml_collections.ConfigDict, *, init_from_pending: bool = False) -> None:
  """Checks a whole run config before anything compiles; raises ConfigError naming the field.

  `init_from_pending`: ckpt.init_from is produced by an earlier pipeline stage, so it need not
  exist yet.
  """
  _require(
    cfg.data.name in TASK_NAMES, f"data.name={cfg.data.name!r} is unknown; use one of {TASK_NAMES}."
  )
  stop = cfg.train.stop_at_metric
  _require(
    not stop.endswith("_sure") or cfg.data.name in SYNTHETIC_NAMES,
    f"train.stop_at_metric={stop!r} counts the answers the past determines, which only a "
    f"synthetic task names, not data.name={cfg.data.name!r}: use {stop.removesuffix('_sure')!r}.",
  )
  validate_model(cfg)
  try:
    dataset = make_dataset(cfg.data, split="train")
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(str(e)) from e
  _check_task_length(cfg, dataset, [("data.T", cfg.data.T)])
  _require(
    dataset.vocab_size == cfg.data.vocab_size,
    f"data.vocab_size={cfg.data.vocab_size} differs from the {cfg.data.name!r} dataset's "
    f"vocabulary ({dataset.vocab_size}); set data.vocab_size={dataset.vocab_size}.",
  )

  o, tr, ck, lg = cfg.optim, cfg.train, cfg.ckpt, cfg.log
  _require(
    o.schedule in SCHEDULES, f"optim.schedule={o.schedule!r} is unknown; use one of {SCHEDULES}."
  )
  _require(o.lr > 0, f"optim.lr={o.lr} must be > 0.")
  _require(o.warmup_steps >= 0, f"optim.warmup_steps={o.warmup_steps} must be >= 0.")
  _require(0 <= o.final_lr_frac <= 1, f"optim.final_lr_frac={o.final_lr_frac} must be in [0, 1].")
  _require(o.clip_norm >= 0, f"optim.clip_norm={o.clip_norm} must be >= 0 (0 = no clipping).")
  _require(
    cfg.method != "bptt" or cfg.bptt.start != "empty" or bool(ck.init_from),
    "bptt.start='empty' starts BPTT from m_empty of a trained encoder, which BPTT does not "
    "train: set ckpt.init_from to an SMT or DMT run (or use bptt.start='init').",
  )
  unknown = [g for g in tr.trainable if g not in GROUPS]
  _require(
    not unknown,
    f"train.trainable={tuple(tr.trainable)} names unknown groups {unknown}; "
    f"use a subset of {GROUPS} (or () for the method's default).",
  )
  _require(tr.num_steps >= 1, f"train.num_steps={tr.num_steps} must be >= 1.")
  _require(
    tr.stop_at_metric in STOP_METRICS
    and (not tr.stop_at_metric.startswith("teacher") or METHODS[cfg.method].has_teacher),
    f'train.stop_at_metric={tr.stop_at_metric!r} must be one of {STOP_METRICS} ("" = no early '
    f"stop; teacher_acc only for a method with a teacher, not {cfg.method!r}).",
  )
  _require(
    0 < tr.stop_at_value <= 1,
    f"train.stop_at_value={tr.stop_at_value} must be an accuracy in (0, 1].",
  )
  _require(tr.batch_size >= 1, f"train.batch_size={tr.batch_size} must be >= 1.")
  _require(
    tr.grad_accum >= 1 and tr.batch_size % tr.grad_accum == 0,
    f"train.batch_size={tr.batch_size} must be divisible by train.grad_accum="
    f"{tr.grad_accum} (>= 1).",
  )

  devices = jax.device_count()
  try:
    data, fsdp = mesh_shape(cfg.mesh.data, cfg.mesh.fsdp, devices)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  _require(
    jax.process_count() == 1 or data * fsdp == devices,
    f"mesh.data * mesh.fsdp = {data} * {fsdp} must use all {devices} devices of a "
    f"{jax.process_count()}-process run (mesh.data=-1 does).",
  )
  micro, split = tr.batch_size // tr.grad_accum, data * fsdp
  axes = "mesh.data" + (" * mesh.fsdp" if fsdp > 1 else "")
  for field, size in (
    (
      f"train.batch_size={tr.batch_size}"
      + (f" / train.grad_accum={tr.grad_accum} = {micro}" if tr.grad_accum > 1 else ""),
      micro,
    ),
    (f"train.eval_batch_size={tr.eval_batch_size}", tr.eval_batch_size),
  ):
    _require(
      size % split == 0,
      f"{field} is not divisible by the {split} devices of {axes}; use a multiple of {split}.",
    )
  _require(
    min(tr.eval_every, tr.eval_batches, tr.eval_batch_size) >= 1,
    "train.eval_every, train.eval_batches and train.eval_batch_size must be >= 1.",
  )
  ev = resolve_eval(cfg, image_pixels(dataset))
  _check_whole_images(cfg, dataset, ev)
  if tr.final_eval:  # The final evaluation reads sequences of eval.T and eval.lengths.
    lengths = [("eval.lengths", n) for n in ev.lengths] if "length" in ev.sections else []
    _check_task_length(cfg, dataset, [("eval.T", ev.T), *lengths])
  _require(lg.every >= 1, f"log.every={lg.every} must be >= 1.")
  _require(
    lg.progress_every_s >= 0,
    f"log.progress_every_s={lg.progress_every_s} must be >= 0 (0 = no progress lines).",
  )
  _require(
    not lg.tensorboard or tensorboard.available(),
    "log.tensorboard=True needs the tensorboardX package (pip install tensorboardX), or set "
    "log.tensorboard=False.",
  )
  _require(ck.keep >= 1, f"ckpt.keep={ck.keep} must be >= 1.")
  _require(
    ck.keep_best in BEST_METRICS
    and (not ck.keep_best.startswith("teacher") or METHODS[cfg.method].has_teacher),
    f'ckpt.keep_best={ck.keep_best!r} must be one of {BEST_METRICS} ("" = off; teacher_* only '
    f"for a method with a teacher, not {cfg.method!r}).",
  )
  _require(
    ck.every >= 1 and ck.every % lg.every == 0,
    f"ckpt.every={ck.every} must be a positive multiple of log.every={lg.every} (a resumed "
    "run then logs the same training averages).",
  )
  unknown = [g for g in ck.init_groups if g not in GROUPS]
  _require(
    not unknown,
    f"ckpt.init_groups={tuple(ck.init_groups)} must name groups of {GROUPS} (unknown: {unknown}).",
  )
  _require(
    ck.init_from or not ck.init_groups,
    f"ckpt.init_groups={tuple(ck.init_groups)} needs ckpt.init_from to take them from.",
  )
  _require(
    not ck.init_from or init_from_pending or checkpoint_dir(ck.init_from) is not None,
    f"ckpt.init_from={ck.init_from!r} holds no checkpoint; point it at the workdir of a "
    'finished run (e.g. an SMT run), or set it to "" to start from scratch.',
  )
