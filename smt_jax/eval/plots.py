"""PNG figures of an evaluation (matplotlib, Agg backend): one function per figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402


def _save(fig, path: str) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _curve(ax, xs, ys, label: str) -> None:
  """Plots the finite points of ys against xs (labels may be sparse: markers when few)."""
  ys = np.asarray(ys, np.float64)
  keep = np.isfinite(ys)
  marker = "o" if keep.sum() <= 32 else None
  ax.plot(np.asarray(xs)[keep], ys[keep], marker=marker, markersize=3, label=label)


def plot_read(curves: dict, path: str) -> None:
  """curves {name: {"loss_per_position", "acc_per_position"} (T,)} -> CE and accuracy panels."""
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  for name, curve in curves.items():
    positions = np.arange(len(curve["loss_per_position"]))
    _curve(ax_loss, positions, curve["loss_per_position"], name)
    _curve(ax_acc, positions, curve["acc_per_position"], name)
  ax_loss.set(
    xlabel="position t (memory after reading x[t])",
    ylabel="cross-entropy (nats)",
    title="Teacher-forced read: cross-entropy per position",
  )
  ax_acc.set(
    xlabel="position t (memory after reading x[t])",
    ylabel="accuracy",
    title="Teacher-forced read: accuracy per position",
    ylim=(-0.02, 1.02),
  )
  for ax in (ax_loss, ax_acc):
    ax.set_xlim(-0.5, len(positions) - 0.5)
    ax.grid(alpha=0.3)
    ax.legend()
  _save(fig, path)


def plot_drift(drift: np.ndarray, one_step: np.ndarray, start: int, path: str) -> None:
  """Rollout drift and one-step error (L,) vs rollout step, log scale."""
  fig, ax = plt.subplots(figsize=(6.5, 4))
  steps = np.arange(1, len(drift) + 1)
  ax.plot(steps, np.maximum(drift, 1e-12), label="rollout drift (RNN on its own memories)")
  ax.plot(steps, np.maximum(one_step, 1e-12), "--", label="one-step error (from encoder memory)")
  ax.set_yscale("log")
  ax.set(
    xlabel=f"rollout step j (memory at position {start} + j)",
    ylabel="MSE to the encoder memory",
    title="Memory drift of the RNN rollout",
  )
  ax.grid(alpha=0.3, which="both")
  ax.legend()
  _save(fig, path)


def _accuracy_lines(xs, ticks, accuracies: dict, xlabel: str, title: str, path: str, mark=None):
  """Task accuracy over xs on a log2 axis labelled `ticks`, one line per model in accuracies
  {name: (len(xs),), None where nothing was measured}; mark(ax) draws a reference line."""
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for name, acc in accuracies.items():
    ax.plot(xs, [np.nan if a is None else a for a in acc], marker="o", label=name)
  if mark is not None:
    mark(ax)
  ax.set_xscale("log", base=2)
  ax.set_xticks(xs, ticks)
  ax.set(xlabel=xlabel, ylabel="task accuracy", ylim=(-0.02, 1.02), title=title)
  ax.grid(alpha=0.3)
  ax.legend()
  _save(fig, path)


def plot_length(lengths, accuracies: dict, train_length: int, path: str) -> None:
  """Task accuracy vs evaluation length, one line per model in accuracies {name: (n,)}."""
  _accuracy_lines(
    lengths,
    [str(n) for n in lengths],
    accuracies,
    "evaluation sequence length T",
    "Length generalisation",
    path,
    mark=lambda ax: ax.axvline(
      train_length, color="grey", linestyle=":", label=f"training length {train_length}"
    ),
  )


def plot_lags(edges, accuracies: dict, path: str) -> None:
  """Accuracy per lag bucket [edges[i], edges[i + 1]), one line per model in accuracies
  {name: (buckets,), None where a bucket has no answers}."""
  _accuracy_lines(
    edges[:-1],
    [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])],
    accuracies,
    "lag: tokens back to the input token the answer repeats",
    "Accuracy by lag",
    path,
  )


def plot_state(edges, accuracies: dict, path: str) -> None:
  """A probe's accuracy per age bucket [edges[i], edges[i + 1]), one line per (memory, slot) in
  accuracies {"rnn slot 0": (buckets,), ...}, None where a bucket has no memories."""
  _accuracy_lines(
    edges[:-1],
    [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])],
    accuracies,
    "age + 1 of the slot's symbol (tokens since its push, plus one)",
    "Linear probe of each stack slot from the memory",
    path,
  )


def plot_carry(carries, accuracy, path: str) -> None:
  """The readout's accuracy after k updates from the encoder's memory, k in `carries` (from 0;
  plotted at k + 1 on the log axis), None where no label was read."""
  _accuracy_lines(
    [k + 1 for k in carries],
    [str(k) for k in carries],
    {"RNN from the encoder's memory": accuracy},
    "k: updates since the encoder's memory",
    "How long the updater keeps what the encoder's memory holds",
    path,
  )


def plot_image_grid(rows: dict, path: str, title: str) -> None:
  """rows {name: uint8 (N, n, H, W)}: one grid row per name, one column per sample, the n
  images of a sample side by side."""
  names = list(rows)
  num = next(iter(rows.values())).shape[0]
  fig, axes = plt.subplots(
    len(names),
    num,
    figsize=(1.4 * num * rows[names[0]].shape[1] + 1, 1.5 * len(names) + 0.6),
    squeeze=False,
  )
  for r, name in enumerate(names):
    for c in range(num):
      ax = axes[r, c]
      ax.imshow(np.concatenate(list(rows[name][c]), axis=1), cmap="gray", vmin=0, vmax=255)
      ax.set_xticks([])
      ax.set_yticks([])
    axes[r, 0].set_ylabel(name, fontsize=8)
  fig.suptitle(title, fontsize=9)
  _save(fig, path)
