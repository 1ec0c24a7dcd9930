"""Side-by-side timing of this project and the PyTorch original, in alternating rounds of one run.

The original (github.com/akarshkumar0101/smt) is timed by `peer_driver.py`, run as a child
process under a Python that has torch and x-transformers, importing the original's
`src/model.py` from a checkout (`run_all.py --peer_src DIR --peer_python PY`). Each round times
every row on both sides, one after the other (the side that goes first alternates), so load
drifts on a shared machine hit both sides alike; the headline ratios are medians over the
rounds of this one run. Without a checkout and a torch Python the same rows are timed for this
project alone.

Every row says what differs between the two sides beyond the framework.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import statistics
import subprocess
from collections.abc import Callable

import jax
import ml_collections
import optax

from experiments.bench import common, depth, plain
from smt_jax.objectives import METHODS

HERE = os.path.dirname(os.path.abspath(__file__))

ORIGINAL_DIFFERS = (
  "the original's x-transformers attention heads are 64 wide (d 128, 4 heads: inner width "
  "256, twice the project's d / heads = 32), and it clips gradient norms per module"
)


@dataclasses.dataclass
class Row:
  """One comparison: a project step and (optionally) the original's step it is set against."""

  key: str
  label: str
  cfg: ml_collections.ConfigDict | None  # None: the plain Transformer LM
  batch: int
  peer: str | None  # peer_driver step name
  differs: str
  labels_vs_peer: bool = False  # compare memory labels per second instead of step time
  scope: str = "all"  # "all" | "method": which parameter groups AdamW updates
  reps: int = 1  # timed calls per round


class Peer:
  """The original's steps, timed in a child process (see peer_driver.py)."""

  def __init__(self, src: str, python: str, threads: int = 2):
    # On a shared, oversubscribed CPU, OpenMP's default active waiting makes torch's 2-thread
    # steps several times slower (measured: 3-5 s instead of 0.36 s for the plain step), so
    # the original runs with passive waiting, as it would see a quiet machine.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    self.proc = subprocess.Popen(
      [python, os.path.join(HERE, "peer_driver.py"), "--src", src, "--threads", str(threads)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
      env=env,
    )
    self.info = self.ask("info")

  def ask(self, line: str) -> dict:
    self.proc.stdin.write(line + "\n")
    self.proc.stdin.flush()
    out = self.proc.stdout.readline()
    if not out:
      raise RuntimeError(f"peer driver exited (status {self.proc.poll()}) on {line!r}")
    return json.loads(out)

  def time(self, name: str, reps: int) -> dict:
    return self.ask(f"time {name} {reps}")

  def close(self):
    try:
      self.ask("quit") if self.proc.poll() is None else None
    except (RuntimeError, BrokenPipeError, json.JSONDecodeError):
      pass
    self.proc.wait(timeout=30)


def open_peer(src: str | None, python: str | None):
  """(Peer, None), or (None, why not) when the original cannot be timed."""
  if not src:
    return None, "no --peer_src given: this project alone"
  if not os.path.exists(os.path.join(src, "src", "model.py")):
    return None, f"--peer_src {src} has no src/model.py: this project alone"
  python = python or os.environ.get("PEER_PYTHON", "")
  if not python:
    return None, "no --peer_python (or PEER_PYTHON) with torch and x-transformers: project alone"
  try:
    return Peer(src, python), None
  except (OSError, RuntimeError, json.JSONDecodeError) as e:
    return None, f"the peer driver did not start under {python}: {e!r}; this project alone"


def train_step(cfg, scope: str = "all", clip: float = 1.0):
  """(init_state, step): AdamW after global-norm clipping, on every group ("all") or on the
  method's trainable groups only ("method", gradients taken for those alone)."""
  loss_fn = METHODS[cfg.method].loss
  groups = METHODS[cfg.method].trainable if scope == "method" else None
  tx = optax.chain(optax.clip_by_global_norm(clip), optax.adamw(1e-4, weight_decay=0.01))

  def split(params):
    if groups is None:
      return params, {}
    return {g: params[g] for g in groups}, {g: v for g, v in params.items() if g not in groups}

  def init_state(rng):
    params = common.init_params(cfg, rng)
    return params, tx.init(split(params)[0])

  def step(state, batch, rng):
    params, opt_state = state
    hot, cold = split(params)
    loss_of = lambda h: loss_fn({**cold, **h}, batch, rng, cfg)
    (loss, _), grads = jax.value_and_grad(loss_of, has_aux=True)(hot)
    updates, opt_state = tx.update(grads, opt_state, hot)
    return ({**cold, **optax.apply_updates(hot, updates)}, opt_state), loss

  return init_state, step


class Prepared:
  """A compiled project step with its state, ready to be timed round after round."""

  def __init__(self, row: Row, plain_shape: dict):
    if row.cfg is None:
      init_state, step, _ = plain.plain_step_fns(
        256, plain_shape["d_model"], plain_shape["depth"], plain_shape["heads"]
      )
      T, vocab = plain_shape["T"], 256
    else:
      init_state, step = train_step(row.cfg, row.scope)
      T, vocab = row.cfg.data.T, row.cfg.data.vocab_size
    self.T = T
    rng = jax.random.PRNGKey(0)
    self.batch = common.random_batch(jax.random.PRNGKey(1), row.batch, T, vocab)
    self.state = init_state(rng)
    self.compiled, self.compile_s = common.compile_step(step, self.state, self.batch, rng)
    self.stats = common.xla_stats(self.compiled)
    self.rng, self.i = rng, 0
    self.stats["jaxpr_matmul_flops"] = float("nan")
    if row.cfg is not None:
      cfg = row.cfg
      params = jax.eval_shape(lambda: common.init_params(cfg, rng))
      loss = lambda p, b, r_: METHODS[cfg.method].loss(p, b, r_, cfg)[0]
      try:
        self.stats["jaxpr_matmul_flops"] = depth.matmul_flops(
          jax.grad(loss), params, self.batch, rng
        )
      except Exception as e:  # pragma: no cover
        self.stats["jaxpr_error"] = repr(e)
    common.time_calls(self.call, 1, warmup=1)

  def call(self):
    self.i += 1
    self.state, loss = self.compiled(self.state, self.batch, jax.random.fold_in(self.rng, self.i))
    return loss

  def time(self, reps: int) -> list[float]:
    return common.time_calls(self.call, reps, warmup=0)


def memory_labels(row: Row, T: int) -> int:
  """Memory labels (dynamics targets) per step of a project row."""
  if row.cfg is None:
    return 0
  c = row.cfg
  if c.method == "smt":
    return row.batch * (T if c.smt.n_t == 0 else c.smt.n_t)  # Pairs from m_-1 (m_empty) on.
  if c.method == "dmt":
    return row.batch * (c.dmt.Td // c.dmt.k)
  return 0


PEER_LABELS = {"smt_n1": 32, "dmt_32": 32 * 8, "dmt_32_orig": 32 * 8}


def select_rows(rows: list[Row], pattern: str) -> list[Row]:
  """The rows whose key matches the regular expression `pattern` ("" = all); SystemExit naming
  the keys when none does."""
  chosen = [r for r in rows if re.search(pattern, r.key)]
  if not chosen:
    keys = ", ".join(r.key for r in rows)
    raise SystemExit(f"--rows={pattern!r} matches no side-by-side row; the rows are: {keys}.")
  return chosen


def side_section(
  rows: list[Row],
  peer: Peer | None,
  rounds: int,
  plain_shape: dict,
  log: Callable,
  matmul: Callable[[], float] | None = None,
):
  """Times every row on both sides in `rounds` alternating rounds; returns the results dict.
  `matmul` (GFLOP/s of the reference matmul) is measured once per round, between the rows, so
  that the rows' achieved FLOP/s are compared with a matmul rate taken under the same load."""
  prepared = {}
  for row in rows:
    prepared[row.key] = Prepared(row, plain_shape)
    st = prepared[row.key].stats
    log(
      f"  compiled {row.key:<24} ({prepared[row.key].compile_s:.0f} s, peak "
      f"{st.get('peak_bytes', 0) / 2**20:.0f} MiB)"
    )
  times = {r.key: [] for r in rows}
  peer_times: dict[str, list[float]] = {}
  peer_info: dict[str, dict] = {}
  matmul_rates = []
  for rnd in range(rounds):
    done = set()  # a peer step shared by several rows is timed once per round
    for row in rows:
      for side in ("project", "peer") if rnd % 2 == 0 else ("peer", "project"):
        if side == "project":
          times[row.key] += prepared[row.key].time(row.reps)
        elif peer is not None and row.peer and row.peer not in done:
          r = peer.time(row.peer, row.reps)
          peer_times.setdefault(row.peer, []).extend(r["times_s"])
          peer_info[row.peer] = r
          done.add(row.peer)
      if matmul is not None and row is rows[len(rows) // 2]:
        matmul_rates.append(matmul())
    log(
      f"  round {rnd + 1}/{rounds}: "
      + ", ".join(f"{k} {statistics.median(v) * 1e3:.0f} ms" for k, v in times.items())
    )
  out = []
  for row in rows:
    p = prepared[row.key]
    s = statistics.median(times[row.key])
    labels = memory_labels(row, p.T)
    r = dict(
      key=row.key,
      label=row.label,
      T=p.T,
      batch=row.batch,
      differs=row.differs,
      scope=row.scope,
      step_s=s,
      step_times_s=times[row.key],
      compile_s=p.compile_s,
      memory_labels=labels,
      labels_per_s=labels / s,
      tokens_per_s=row.batch * p.T / s,
      achieved_gflops_xla=p.stats.get("flops", float("nan")) / s / 1e9,
      **p.stats,
    )
    if row.cfg is not None:
      t = row.cfg.model.teacher
      r.update(method=row.cfg.method, encoder=t.encoder, buckets=t.buckets, n_dec=row.cfg.smt.n_dec)
    if row.peer and row.peer in peer_times:
      ps = statistics.median(peer_times[row.peer])
      r.update(peer=row.peer, peer_step_s=ps, peer_times_s=peer_times[row.peer])
      if row.labels_vs_peer:
        peer_lps = PEER_LABELS[row.peer] / ps
        r.update(peer_labels_per_s=peer_lps, ratio=r["labels_per_s"] / peer_lps)
        r["ratio_kind"] = "memory labels per second, project / original"
      else:
        r.update(ratio=ps / s, ratio_kind="speed-up, original step / project step")
    out.append(r)
  return dict(
    rounds=rounds,
    matmul_gflops_rounds=matmul_rates,
    matmul_gflops=statistics.median(matmul_rates) if matmul_rates else float("nan"),
    peer=None if peer is None else peer.info,
    peer_steps={k: {kk: v for kk, v in i.items() if kk != "times_s"} for k, i in peer_info.items()},
    rows=out,
  )


def reference_rows(g: dict, base_cfg: Callable) -> list[Row]:
  """The rows of the side-by-side table at the reference config (CPU) or the paper's."""
  ref_T, B, Ball = g["ref_T"], g["ref_batch"], g["smt_all_batch"]
  v = lambda name, T=ref_T, **kw: _variant(base_cfg(T), name, **kw)
  clip = "both clip gradient norms (the original per module, the project globally)"
  rows = [
    Row(
      "plain",
      "plain causal LM step (framework parity)",
      None,
      B,
      "plain_dh32",
      "x-transformers LM (heads 32 wide, as here) vs the project's blocks; no clipping either side",
    ),
    Row(
      "smt_n1",
      "SMT, one memory per sequence",
      v("smt_n1"),
      B,
      "smt_n1",
      f"{ORIGINAL_DIFFERS}; AdamW on every group both sides; {clip}",
    ),
    Row(
      "smt_all_window",
      "SMT all timesteps, window encoder",
      v("smt_all"),
      Ball,
      "smt_n1",
      "memory labels/s against the original's one label per sequence; "
      f"{ORIGINAL_DIFFERS}; project: T dynamics pairs (from m_empty on) and T + 1 decoded "
      "memories per sequence",
      labels_vs_peer=True,
    ),
    Row(
      "smt_all_window_buckets",
      "SMT all timesteps, window encoder, length buckets",
      v("smt_all", buckets=g["buckets"]),
      Ball,
      "smt_n1",
      f"as smt_all_window, windows encoded in {g['buckets']} length classes (exact)",
      labels_vs_peer=True,
    ),
    Row(
      "smt_all_stream",
      "SMT all timesteps, streaming encoder",
      v("smt_all", encoder="stream"),
      g["stream_batch"],
      "smt_n1",
      "as smt_all_window, but one streaming-encoder pass per sequence (a different teacher: "
      "causal token trunk)",
      labels_vs_peer=True,
    ),
    Row(
      "smt_all_stream_dec",
      f"SMT all timesteps, streaming encoder, {g['n_dec']} decoded per sequence",
      v("smt_all", encoder="stream", n_dec=g["n_dec"]),
      g["stream_batch"],
      "smt_n1",
      f"as smt_all_stream, the decoder loss on {g['n_dec']} random memories per sequence "
      "(dynamics and uniformity on all)",
      labels_vs_peer=True,
    ),
    Row(
      "dmt_32",
      "DMT, Td 32, k 4, like for like",
      v("dmt_32"),
      B,
      "dmt_32",
      "both: from the memory of the first Tc tokens, memory detached before every update, "
      "teacher frozen, AdamW on the RNN only; the original also computes its frozen decoder's "
      f"loss on the targets (the project skips it, dmt.coef_dec 0); {ORIGINAL_DIFFERS}",
      scope="method",
    ),
    Row(
      "bptt_T64",
      "BPTT, T 64",
      v("bptt", T=64),
      B,
      "bptt_T64",
      f"{ORIGINAL_DIFFERS}; AdamW on the RNN only both sides",
      scope="method",
    ),
    Row(
      "bptt_remat_T64",
      "BPTT, T 64, remat",
      v("bptt_remat", T=64),
      B,
      "bptt_T64",
      "as bptt_T64, the project recomputing each scanned step in the backward pass",
      scope="method",
    ),
  ]
  return rows


def _variant(base, name, encoder="window", buckets=1, n_dec=0):
  c = common.variant_config(base, name)
  c.model.teacher.encoder = encoder
  c.model.teacher.buckets = buckets
  c.smt.n_dec = n_dec
  return c
