"""Shared pieces of the benchmarks: configs, the compiled training step, timing, XLA analyses.

Every project row is timed and traced through the training step that `experiments/run.py` runs
(`smt_jax.train.loop.fresh_start`): its optimizer, clipping, frozen groups and data sampling.
Nothing here is timed in tests; the fast tests (tests/test_bench*.py) check the non-timing logic.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.bench import depth
from experiments.configs import DMT_STAGE
from smt_jax.config import base_config
from smt_jax.objectives.dmt import rollout_length
from smt_jax.train.loop import fresh_start
from smt_jax.train.validate import validate_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ----------------------------------------------------------------------------------------------
# Configs.


def reference_config(T: int = 64) -> ml_collections.ConfigDict:
  """The reference config, the point where the PyTorch original is timed beside us; float32."""
  c = base_config()
  c.data.vocab_size = 256
  c.data.T = T
  c.model.d_model = 128
  c.model.num_heads = 4
  c.model.mem_tokens = 4
  c.model.dtype = "float32"
  c.model.teacher.encoder_depth = 4
  c.model.teacher.decoder_depth = 2
  c.model.teacher.Tc = 64
  c.model.teacher.Tf = 32
  c.model.rnn.updater = "transformer"
  c.model.rnn.depth = 4
  c.model.rnn.readout_depth = 2
  c.model.rnn.readout_from_decoder = True
  c.dmt.Td = 32
  c.dmt.k = 4
  return c


def paper_config(T: int = 1024) -> ml_collections.ConfigDict:
  """The paper's scale: d 256, 8 heads, K 16, Z 4096, depths 8/4/8/4, bf16."""
  c = reference_config(T)
  c.model.d_model = 256
  c.model.num_heads = 8
  c.model.mem_tokens = 16
  c.model.dtype = "bfloat16"
  c.model.teacher.encoder_depth = 8
  c.model.teacher.decoder_depth = 4
  c.model.teacher.Tc = 256
  c.model.teacher.Tf = 64
  c.model.rnn.depth = 8
  c.model.rnn.readout_depth = 4
  return c


def small_config(T: int = 64) -> ml_collections.ConfigDict:
  """A narrow model for reaching long T on a CPU: d 64, K 2, depths 2/1/2/1, Tc 32, Tf 8."""
  c = reference_config(T)
  c.model.d_model = 64
  c.model.num_heads = 4
  c.model.mem_tokens = 2
  c.model.teacher.encoder_depth = 2
  c.model.teacher.decoder_depth = 1
  c.model.teacher.Tc = 32
  c.model.teacher.Tf = 8
  c.model.rnn.depth = 2
  c.model.rnn.readout_depth = 1
  c.dmt.Td = 16
  return c


# A benchmark "variant": method plus the knobs that distinguish the rows of the tables. "dmt" is
# the DMT the studies run (experiments/configs DMT_STAGE, rollout from m_empty over the whole
# sequence, gradients through it: a gradient path of T updates; a target at every step, k = 1,
# from the streaming teacher, as the retrieval and stack configs set them); "dmt_sg" the same
# rollout with the memory detached before every update (gradient path 1). "dmt_32*" start,
# like the PyTorch original, from the encoder memory of the first Tc tokens for Td 32 steps.
VARIANTS = {
  "smt_all": dict(method="smt", n_t=0),
  "smt_all_stream": dict(method="smt", n_t=0, encoder="stream"),
  "smt_n1": dict(method="smt", n_t=1),
  "smt_n8": dict(method="smt", n_t=8),
  "dmt": dict(method="dmt", recipe=True, backprop=True, encoder="stream"),
  "dmt_sg": dict(method="dmt", recipe=True, backprop=False, encoder="stream"),
  "dmt_32": dict(method="dmt", like_original=True, backprop=False),
  "dmt_32_bp": dict(method="dmt", like_original=True, backprop=True),
  "bptt": dict(method="bptt", remat=False),
  "bptt_remat": dict(method="bptt", remat=True),
}


def variant_config(base: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """A copy of `base` set up for one variant (see VARIANTS), validated."""
  v = VARIANTS[variant]
  c = ml_collections.ConfigDict(base.to_dict())
  c.method = v["method"]
  T = c.data.T
  if v["method"] == "smt":
    c.smt.n_t = min(v["n_t"], T - 1)
  c.model.teacher.encoder = v.get("encoder", "window")
  if v.get("recipe"):  # The studies' DMT stage: from m_empty through all T tokens.
    for group, fields in DMT_STAGE.items():
      c[group].update(fields)
    c.dmt.start, c.dmt.Td, c.dmt.random_start, c.dmt.include_start = -1, 0, False, False
    c.dmt.k = 1
  if v.get("like_original"):  # The original's rollout: from the memory of a full first window,
    c.dmt.start = c.model.teacher.Tc - 1  # with readout and MSE from that memory on.
    c.dmt.include_start = True
    c.dmt.Td = min(c.dmt.Td, T - 1)
  if v["method"] == "dmt":
    c.dmt.k = min(c.dmt.k, rollout_length(c, T))
    c.dmt.grad_steps = 0 if v["backprop"] else 1
  if v["method"] == "bptt":
    c.bptt.remat = v["remat"]
  # The teacher windows must fit in T (validation); shrink them for short sequences.
  t = c.model.teacher
  if t.Tc + t.Tf > T:
    t.Tf = max(1, min(t.Tf, T // 4))
    t.Tc = T - t.Tf
  validate_model(c)
  return c


def memory_labels(cfg: ml_collections.ConfigDict, batch_size: int) -> int:
  """Memory labels (dynamics targets) per step: SMT's pairs from m_empty on (T, or n_t per
  sequence), DMT's supervised rollout steps (Td // k per sequence), none for BPTT."""
  if cfg.method == "smt":
    return batch_size * (cfg.data.T if cfg.smt.n_t == 0 else cfg.smt.n_t)
  if cfg.method == "dmt":
    return batch_size * (rollout_length(cfg, cfg.data.T) // cfg.dmt.k)
  return 0


def starts_from(cfg: ml_collections.ConfigDict) -> str:
  """Where the row's recurrence starts, in words (the tables' "from" column)."""
  if cfg.method == "smt":
    return "encoder memory (m_empty for x[0])"
  if cfg.method == "dmt":
    d = cfg.dmt
    if d.random_start:
      return "encoder memory at a random position"
    return "m_empty" if d.start < 0 else f"encoder memory of x[0..{d.start}]"
  return "m_empty" if cfg.bptt.start == "empty" else "the updater's initial memory"


def random_batch(rng: jax.Array, batch_size: int, T: int, vocab: int) -> dict:
  """Random tokens; y is the next token (the last position has no label)."""
  seq = jax.random.randint(rng, (batch_size, T + 1), 0, vocab, dtype=jnp.int32)
  return {"x": seq[:, :-1], "y": seq[:, 1:]}


# ----------------------------------------------------------------------------------------------
# Steps.


def training_step(cfg: ml_collections.ConfigDict, batch_size: int) -> tuple:
  """(state, step_fn) of cfg with train.batch_size = batch_size, as `experiments/run.py` starts a
  run (`smt_jax.train.loop.fresh_start`): step_fn(state, step) -> (state, metrics) is the jitted
  update (state donated) that samples the batch of `step` from cfg.data inside the program."""
  c = ml_collections.ConfigDict(cfg.to_dict())
  c.train.batch_size, c.train.grad_accum = batch_size, 1
  return fresh_start(c)


class CompiledStep:
  """A step compiled once and called round after round, each call advancing its state.

  With cfg: the training step of `training_step`, called with the step index. With fns =
  (init_state, step) instead (the plain Transformer LM): step(state, batch, rng) -> (state,
  loss) jitted with the state donated, on one random batch of (batch_size, T) tokens.
  `stats` holds XLA's memory and cost figures and the jaxpr's matmul FLOPs (scans counted by
  their length).
  """

  def __init__(
    self,
    cfg: ml_collections.ConfigDict | None,
    batch_size: int,
    fns: tuple | None = None,
    T: int | None = None,
    vocab: int | None = None,
  ):
    if fns is None:
      self.state, jitted = training_step(cfg, batch_size)
      self._args = lambda i: (i,)
    else:
      init_state, step = fns
      rng = jax.random.PRNGKey(0)
      self.state = init_state(rng)
      batch = random_batch(jax.random.PRNGKey(1), batch_size, T, vocab)
      self._args = lambda i: (batch, jax.random.fold_in(rng, i))
      jitted = jax.jit(step, donate_argnums=0)
    t0 = time.perf_counter()
    self.compiled = jitted.lower(self.state, *self._args(0)).compile()
    self.compile_s = time.perf_counter() - t0
    self.stats = xla_stats(self.compiled)
    self.stats["jaxpr_matmul_flops"] = depth.matmul_flops(jitted, self.state, *self._args(0))
    self.i = 0  # The next call's step index.

  def call(self):
    """One step; returns its output (metrics or loss), not yet blocked on."""
    self.state, out = self.compiled(self.state, *self._args(self.i))
    self.i += 1
    return out

  def time(self, reps: int, warmup: int = 0, max_seconds: float | None = None) -> list[float]:
    return time_calls(self.call, reps, warmup, max_seconds)


def xla_stats(compiled) -> dict:
  """Peak-memory figures (bytes) and FLOPs from XLA's compiled memory and cost analyses."""
  out: dict[str, Any] = {}
  try:
    mem = compiled.memory_analysis()
    if mem is not None:
      for name in (
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "temp_size_in_bytes",
        "alias_size_in_bytes",
        "generated_code_size_in_bytes",
      ):
        out[name] = int(getattr(mem, name, 0) or 0)
      # Peak live bytes of one call: arguments + outputs + temporaries, minus donated aliases.
      out["peak_bytes"] = (
        out["argument_size_in_bytes"]
        + out["output_size_in_bytes"]
        + out["temp_size_in_bytes"]
        - out["alias_size_in_bytes"]
      )
  except Exception as e:  # pragma: no cover - backend-specific
    out["memory_error"] = repr(e)
  try:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0] if cost else {}
    out["flops"] = float(cost.get("flops", float("nan"))) if cost else float("nan")
    out["bytes_accessed"] = (
      float(cost.get("bytes accessed", float("nan"))) if cost else float("nan")
    )
  except Exception as e:  # pragma: no cover
    out["cost_error"] = repr(e)
  return out


def time_calls(
  fn: Callable[[], Any], repeats: int, warmup: int = 1, max_seconds: float | None = None
) -> list[float]:
  """Wall-clock seconds of `repeats` calls of fn (each blocked until ready) after `warmup`."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  start = time.perf_counter()
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
    if max_seconds is not None and time.perf_counter() - start > max_seconds and len(times) >= 2:
      break
  return times


def bench_step(
  cfg: ml_collections.ConfigDict | None,
  batch_size: int,
  repeats: int = 5,
  max_seconds: float | None = None,
  fns: tuple | None = None,
  T: int | None = None,
  vocab: int | None = None,
  max_peak_bytes: float | None = None,
) -> dict:
  """Compiles and times one step (a CompiledStep of cfg, or of fns); returns timings and XLA
  statistics. When XLA's peak-memory estimate exceeds max_peak_bytes the step is compiled but
  not run."""
  step = CompiledStep(cfg, batch_size, fns, T, vocab)
  stats = step.stats
  if max_peak_bytes is not None and stats.get("peak_bytes", 0) > max_peak_bytes:
    return dict(
      step_s=float("nan"),
      step_times_s=[],
      compile_s=step.compile_s,
      skipped=f"peak {stats['peak_bytes'] / 2**30:.1f} GiB > limit",
      **stats,
    )
  times = step.time(repeats, warmup=1, max_seconds=max_seconds)
  return dict(
    step_s=statistics.median(times), step_times_s=times, compile_s=step.compile_s, **stats
  )


# ----------------------------------------------------------------------------------------------
# Device facts measured in the same run.


def matmul_gflops(n: int = 1024, dtype=jnp.float32, repeats: int = 10) -> float:
  """Achieved GFLOP/s of a jitted n x n matmul (median of repeats), the roofline reference."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
  f = jax.jit(lambda a, b: a @ b)
  times = time_calls(lambda: f(a, b), repeats, warmup=2)
  return 2 * n**3 / statistics.median(times) / 1e9


def environment() -> dict:
  """Device, versions and machine facts for the report."""
  import flax

  dev = jax.devices()[0]
  try:
    commit = subprocess.run(
      ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
    ).stdout.strip()
  except Exception:  # pragma: no cover
    commit = "?"
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {
    "backend": jax.default_backend(),
    "device": f"{dev.platform}:{getattr(dev, 'device_kind', '?')}",
    "num_devices": jax.device_count(),
    "cpu": cpu,
    "cpu_count": os.cpu_count(),
    "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    "loadavg": list(os.getloadavg()),
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": getattr(__import__("jaxlib"), "__version__", "?"),
    "flax": flax.__version__,
    "optax": optax.__version__,
    "numpy": np.__version__,
    "commit": commit,
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def write_results(path: str, settings: dict, rows: list) -> None:
  """A benchmark's JSON at `path`: {"environment": environment() (device, versions, commit, load
  average), "args": settings, "rows": rows}; its folder is made if missing."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump({"environment": environment(), "args": settings, "rows": rows}, f, indent=1)
