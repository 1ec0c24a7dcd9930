"""Metrics of a run: one JSON object per line in workdir/metrics.jsonl, and a PNG of the curves.

`ProgressLog` prints a line every few seconds (step, updates/s, loss, ETA) where no progress
bar can be drawn (stderr is not a terminal: a cluster's log file). Each row is appended in one
write; a process killed mid-write can leave a torn last line (no
newline, not JSON), which `read_metrics` drops with a warning. Truncation rewrites the file
atomically (temp file, then rename), so no row before the cut can be lost.
"""

import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable

import numpy as np

from smt_jax.errors import ConfigError

PLOTTED = ("loss", "rnn_loss", "rnn_acc", "teacher_loss", "teacher_acc")


class MetricWriter:
  """Appends {"step", "split", **scalars} rows to a JSONL file."""

  def __init__(self, path: str | pathlib.Path):
    self.path = pathlib.Path(path)

  def write(self, step: int, split: str, metrics: dict) -> None:
    row = {"step": int(step), "split": split, **{k: float(v) for k, v in metrics.items()}}
    with self.path.open("a") as f:
      f.write(json.dumps(row) + "\n")

  def truncate_after(self, step: int) -> int:
    """Drops rows logged after `step` (a resumed run re-logs them from its checkpoint) and a torn
    last line; returns the number of rows dropped. Leaves the file untouched if nothing is."""
    if not self.path.exists():
      return 0
    text = self.path.read_text()
    kept = [r for r in read_metrics(self.path, warn=False) if r["step"] <= step]
    new = "".join(json.dumps(r) + "\n" for r in kept)
    if new != text:
      tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
      tmp.write_text(new)
      os.replace(tmp, self.path)
    return sum(1 for line in text.splitlines() if line.strip()) - len(kept)


class CorruptMetrics(ConfigError):
  """A line of metrics.jsonl other than the last is not JSON; the message names it."""


def read_metrics(
  path: str | pathlib.Path, split: str | None = None, warn: bool = True
) -> list[dict]:
  """The rows of a metrics.jsonl (of one split if given); [] when it does not exist.

  A torn last line (an interrupted write) is dropped, with a warning on stderr if `warn`; any
  other line that is not a JSON row raises CorruptMetrics naming the file and line.
  """
  path = pathlib.Path(path)
  if not path.exists():
    return []
  lines = path.read_text().splitlines()
  rows = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
      if not isinstance(row, dict) or "step" not in row or "split" not in row:
        raise ValueError("not a metrics row")
    except ValueError:
      if i == len(lines) - 1:
        if warn:
          print(
            f"warning: {path}: dropped a torn last line ({len(line)} characters), left by an "
            "interrupted write.",
            file=sys.stderr,
          )
        break
      raise CorruptMetrics(
        f"{path}, line {i + 1}: not a metrics row ({line[:60]!r}); fix or remove that line."
      ) from None
    rows.append(row)
  return [r for r in rows if split is None or r["split"] == split]


def mean_metrics(history: list[dict]) -> dict:
  """Mean of each scalar over a list of metric dicts (host numbers or arrays)."""
  return {k: float(np.mean([np.asarray(m[k]) for m in history])) for k in history[0]}


def first_nonfinite(history: list[dict], steps_before: int, keys=("loss", "grad_norm")):
  """The update number (1-based, as metrics.jsonl counts) of the first entry of `history` whose
  loss or gradient norm is NaN or Inf, None if all are finite; history[0] is update
  steps_before + 1."""
  for i, m in enumerate(history):
    if any(k in m and not math.isfinite(float(m[k])) for k in keys):
      return steps_before + i + 1
  return None


def plot_curves(metrics_path: str | pathlib.Path, out_path: str | pathlib.Path) -> None:
  """One panel per metric in PLOTTED, train and eval curves against the step."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = read_metrics(metrics_path)
  names = [k for k in PLOTTED if any(k in r for r in rows)]
  fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
  for ax, name in zip(axes[0], names):
    for split in ("train", "eval"):
      points = [(r["step"], r[name]) for r in rows if r["split"] == split and name in r]
      if points:
        ax.plot(*zip(*points), label=split, marker="." if split == "eval" else None)
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.legend()
  fig.tight_layout()
  fig.savefig(out_path, dpi=100)
  plt.close(fig)


class ProgressLog:
  """A progress line on `stream` at most every `every_s` seconds of `clock`:
  "NAME: step 120/400 (30%), 2.41 updates/s, loss 2.3456, ETA 1m56s". The rate is over the
  steps since the previous line (or since the start); ETA = remaining steps / that rate."""

  def __init__(
    self,
    name: str,
    total: int,
    start: int,
    every_s: float,
    stream=None,
    clock: Callable[[], float] = time.monotonic,
  ):
    self.name, self.total, self.every_s = name, total, every_s
    self.stream, self.clock = stream, clock  # stream None: sys.stderr at each line.
    self.last_step, self.last_time = start, clock()

  def update(self, step: int, loss: Callable[[], float]) -> None:
    """After update `step` (1-based); `loss()` (the latest training loss) is called only when a
    line is printed, as it may wait for the device."""
    now = self.clock()
    if now - self.last_time < self.every_s or step == self.last_step:
      return
    rate = (step - self.last_step) / (now - self.last_time)
    eta = format_duration((self.total - step) / rate)
    print(
      f"{self.name}: step {step}/{self.total} ({100 * step // self.total}%), {rate:.3g} "
      f"updates/s, loss {loss():.4f}, ETA {eta}",
      file=self.stream or sys.stderr,
      flush=True,
    )
    self.last_step, self.last_time = step, now


def format_duration(seconds: float) -> str:
  """12s, 3m05s or 2h07m (rounded down)."""
  s = int(seconds)
  if s < 60:
    return f"{s}s"
  if s < 3600:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s // 3600}h{s % 3600 // 60:02d}m"
