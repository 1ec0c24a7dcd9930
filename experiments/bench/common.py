"""Shared pieces of the benchmarks: configs, batches, jitted train steps, timing, XLA analyses.

Nothing here is timed in tests; the fast tests (tests/test_bench*.py) check the non-timing logic.
"""

from __future__ import annotations

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

from smt_jax.config import base_config
from smt_jax.models import init_params
from smt_jax.objectives import METHODS
from smt_jax.train.validate import validate_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ----------------------------------------------------------------------------------------------
# Configs.


def reference_config(T: int = 64) -> ml_collections.ConfigDict:
  """The issue's reference config (the PyTorch original's comparison point), float32."""
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
  """The paper's scale (issue item 5): d 256, 8 heads, K 16, Z 4096, depths 8/4/8/4, bf16."""
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


# A benchmark "variant": method plus the knobs that distinguish the rows of the tables.
VARIANTS = {
  "smt_all": dict(method="smt", n_t=0),
  "smt_all_stream": dict(method="smt", n_t=0, encoder="stream"),
  "smt_n1": dict(method="smt", n_t=1),
  "smt_n8": dict(method="smt", n_t=8),
  "dmt": dict(method="dmt", Td_eq_T=True),
  "dmt_bp": dict(method="dmt", Td_eq_T=True, backprop=True),
  "dmt_32": dict(method="dmt", like_original=True),
  "dmt_32_remat": dict(method="dmt", like_original=True, remat=True),
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
  if v.get("Td_eq_T"):
    c.dmt.Td = T - 1  # "Td = T": the longest rollout a length-T sequence holds (start 0).
    c.dmt.start = 0
  if v.get("like_original"):  # The original's rollout: from the memory of a full first window,
    c.dmt.start = c.model.teacher.Tc - 1  # with readout and MSE from that memory on.
    c.dmt.include_start = True
  c.dmt.Td = min(c.dmt.Td, T - 1)
  c.dmt.k = min(c.dmt.k, c.dmt.Td)
  if v["method"] == "bptt":
    c.bptt.remat = v["remat"]
  if v["method"] == "dmt":  # Per-step stop-gradient unless the variant backpropagates through.
    c.dmt.remat = v.get("remat", False)
    c.dmt.backprop_through_rollout = v.get("backprop", False)
  # The teacher windows must fit in T (validation); shrink them for short sequences.
  t = c.model.teacher
  if t.Tc + t.Tf > T:
    t.Tf = max(1, min(t.Tf, T // 4))
    t.Tc = T - t.Tf
  validate_model(c)
  return c


def random_batch(rng: jax.Array, batch_size: int, T: int, vocab: int) -> dict:
  """Random tokens; y is the next token (the last position has no label)."""
  seq = jax.random.randint(rng, (batch_size, T + 1), 0, vocab, dtype=jnp.int32)
  return {"x": seq[:, :-1], "y": seq[:, 1:]}


# ----------------------------------------------------------------------------------------------
# Train steps (a tiny AdamW step: the real trainer lives in smt_jax.train).


def make_train_step(cfg: ml_collections.ConfigDict, loss_fn: Callable | None = None):
  """(init_state, step) with step(state, batch, rng) -> (state, loss); AdamW on every group.

  Every parameter group is trained (also the teacher under DMT, whose loss gives it no
  gradient: its targets are fixed labels) so that all methods pay the same updater cost.
  """
  loss_fn = loss_fn or METHODS[cfg.method].loss
  tx = optax.adamw(1e-4, weight_decay=0.01)

  def init_state(rng):
    params = init_params(cfg, rng)
    return params, tx.init(params)

  def step(state, batch, rng):
    params, opt_state = state
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng, cfg)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  return init_state, step


def compile_step(step, state, batch, rng):
  """Lowers and compiles the jitted step (state donated); returns (compiled, seconds)."""
  t0 = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=0).lower(state, batch, rng).compile()
  return compiled, time.perf_counter() - t0


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
  cfg: ml_collections.ConfigDict,
  batch_size: int,
  repeats: int = 5,
  max_seconds: float | None = None,
  loss_fn: Callable | None = None,
  fns: tuple | None = None,
  T: int | None = None,
  vocab: int | None = None,
  max_peak_bytes: float | None = None,
) -> dict:
  """Compiles and times one train step; returns timings and XLA statistics.

  fns = (init_state, step) overrides the step built from cfg (e.g. the plain Transformer).
  When XLA's peak-memory estimate exceeds max_peak_bytes the step is compiled but not run.
  """
  init_state, step = fns if fns is not None else make_train_step(cfg, loss_fn)
  T = T or cfg.data.T
  vocab = vocab or cfg.data.vocab_size
  rng = jax.random.PRNGKey(0)
  state = init_state(rng)
  batch = random_batch(jax.random.PRNGKey(1), batch_size, T, vocab)
  compiled, compile_s = compile_step(step, state, batch, rng)
  stats = xla_stats(compiled)
  if max_peak_bytes is not None and stats.get("peak_bytes", 0) > max_peak_bytes:
    return dict(
      step_s=float("nan"),
      step_times_s=[],
      compile_s=compile_s,
      skipped=f"peak {stats['peak_bytes'] / 2**30:.1f} GiB > limit",
      **stats,
    )
  holder = {"state": state, "i": 0}

  def call():
    holder["i"] += 1
    holder["state"], loss = compiled(holder["state"], batch, jax.random.fold_in(rng, holder["i"]))
    return loss

  times = time_calls(call, repeats, warmup=1, max_seconds=max_seconds)
  med = statistics.median(times)
  return dict(step_s=med, step_times_s=times, compile_s=compile_s, **stats)


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
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": getattr(__import__("jaxlib"), "__version__", "?"),
    "flax": flax.__version__,
    "optax": optax.__version__,
    "numpy": np.__version__,
    "commit": commit,
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }
