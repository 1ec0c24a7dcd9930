"""Metrics of a run: one JSON object per line in workdir/metrics.jsonl, and a PNG of the curves.

Each row is appended in one write; a process killed mid-write can leave a torn last line (no
newline, not JSON), which `read_metrics` drops with a warning. Truncation rewrites the file
atomically (temp file, then rename), so no row before the cut can be lost.
"""

import json
import math
import os
import pathlib
import sys

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
