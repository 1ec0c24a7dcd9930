"""Side-by-side timing of this project and the PyTorch original, in alternating rounds of one run.

The original (github.com/akarshkumar0101/smt) is timed by `peer_driver.py`, run as a child
process under a Python that has torch and x-transformers, importing the original's
`src/model.py` from a checkout (`run_all.py --peer_src DIR --peer_python PY`). Each round times
every row on both sides, one after the other (the side that goes first alternates), so load
drifts on a shared machine hit both sides alike; the headline ratios are medians over the
rounds of this one run. Without a checkout and a torch Python the same rows are timed for this
project alone.

Every project row runs the training step of `experiments/run.py` (common.CompiledStep: its
optimizer with global-norm clipping, the method's trainable groups, data sampled in the step).
A row set against the original runs the same gradient path as the original's step (DMT rows: a
detached memory before every update against its detached rollout, gradients through the rollout
against its default); every row says what differs between the two sides beyond the framework.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import statistics
import subprocess
from collections.abc import Callable

import ml_collections

from experiments.bench import common, depth, plain

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


class Prepared:
  """A compiled step of a row (common.CompiledStep) with its gradient path, ready to be timed
  round after round."""

  def __init__(self, row: Row, plain_shape: dict):
    if row.cfg is None:
      init_state, step, _ = plain.plain_step_fns(
        256, plain_shape["d_model"], plain_shape["depth"], plain_shape["heads"]
      )
      self.T = plain_shape["T"]
      self.step = common.CompiledStep(None, row.batch, (init_state, step), self.T, 256)
    else:
      self.T = row.cfg.data.T
      self.step = common.CompiledStep(row.cfg, row.batch)
      self.step.stats.update(depth.objective_depths(row.cfg))
    self.compiled, self.compile_s, self.stats = (
      self.step.compiled,
      self.step.compile_s,
      self.step.stats,
    )
    self.step.time(1, warmup=1)

  def call(self):
    return self.step.call()

  def time(self, reps: int) -> list[float]:
    return self.step.time(reps)


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
    labels = 0 if row.cfg is None else common.memory_labels(row.cfg, row.batch)
    r = dict(
      key=row.key,
      label=row.label,
      T=p.T,
      batch=row.batch,
      differs=row.differs,
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
      r.update(
        method=row.cfg.method,
        encoder=t.encoder,
        buckets=t.buckets,
        n_dec=row.cfg.smt.n_dec,
        starts_from=common.starts_from(row.cfg),
      )
    if row.peer and row.peer in peer_times:
      ps = statistics.median(peer_times[row.peer])
      r.update(peer=row.peer, peer_step_s=ps, peer_times_s=peer_times[row.peer])
      if row.labels_vs_peer:
        peer_lps = peer_info[row.peer]["labels"] / ps
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
  adam = "AdamW on the groups the loss reaches both sides"
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
      f"{ORIGINAL_DIFFERS}; {adam}; {clip}",
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
      "dmt",
      "DMT as the studies run it: from m_empty, all T updates, gradients through the rollout",
      v("dmt"),
      g["stream_batch"],
      None,
      "the project alone (the original's DMT starts from an encoder memory at Tc); gradient "
      "path T updates, a dense target at every step (k = 1) from the streaming teacher, teacher "
      "frozen, the updater trained alone (readout frozen), AdamW and clipping of "
      "experiments/run.py",
    ),
    Row(
      "dmt_stopgrad",
      "DMT, per-step stop-gradient (otherwise as the studies')",
      v("dmt_sg"),
      g["stream_batch"],
      None,
      "as dmt, the memory detached before every update: gradient path 1",
    ),
    Row(
      "dmt_32",
      "DMT, Td 32, k 4, per-step stop-gradient, like for like",
      v("dmt_32"),
      B,
      "dmt_32",
      "both: from the memory of the first Tc tokens, memory detached before every update "
      "(gradient path 1), teacher frozen, AdamW on the RNN only; the original also computes its "
      f"frozen decoder's loss on the targets (the project skips it, dmt.coef_dec 0); "
      f"{ORIGINAL_DIFFERS}",
    ),
    Row(
      "dmt_32_bp",
      "DMT, Td 32, k 4, gradients through the rollout, like for like",
      v("dmt_32_bp"),
      B,
      "dmt_32_orig",
      "both: as dmt_32 but gradients through the rollout (gradient path Td - 1 = 31 updates "
      "after the start memory; the original's default); the original's teacher keeps "
      "requires_grad, so its backward also runs through the encoder (not updated); "
      f"{ORIGINAL_DIFFERS}",
    ),
    Row(
      "bptt_T64",
      "BPTT, T 64",
      v("bptt", T=64),
      B,
      "bptt_T64",
      f"{ORIGINAL_DIFFERS}; AdamW on the RNN only both sides",
    ),
    Row(
      "bptt_remat_T64",
      "BPTT, T 64, remat",
      v("bptt_remat", T=64),
      B,
      "bptt_T64",
      "as bptt_T64, the project recomputing each scanned step in the backward pass",
    ),
  ]
  return rows


def _variant(base, name, encoder=None, buckets=1, n_dec=0):
  c = common.variant_config(base, name)
  c.model.teacher.encoder = encoder or c.model.teacher.encoder
  c.model.teacher.buckets = buckets
  c.smt.n_dec = n_dec
  return c
