"""Study 7, pixels: SMT -> DMT against BPTT of the same updaters and of a GRU on whole images
(MNIST at 14 x 14 with 16 grey levels, T = 196: experiments/configs/mnist.py; scikit-learn's
8 x 8 digits at their 17 levels, T = 64: digits.py), every RNN read from x[0].

  python -m smt_jax.data.prepare mnist --size 14 --levels 16
  python -m smt_jax.data.prepare digits --levels 17
  python experiments/repro/pixels.py [--quick] [--runs REGEX] [--report_only] [--jobs N]

Reported: bits per pixel over whole held-out images; learning curves against images seen and
wall-clock; long range: bits per pixel of the bottom half given the top half (the read from
x[0] over whole images) against the bottom half read alone, and completions of held-out top
halves scored by a digit classifier trained on the real images (`DigitClassifier`: an RBF
support-vector machine on the grey levels; its accuracy on the real test images is reported and
must exceed MIN_CLASSIFIER_ACC before it scores anything); along the image, each SMT -> DMT RNN
against its teacher (bits per half, one-step error, drift) and every model's bits by image row.
Sample grids are each run's samples.png.
--quick runs digits only, with the configs' smoke budgets.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import digits, mnist
from experiments.repro import records, reporting, runner, text
from smt_jax.checkpointing import SUBDIR, load_params
from smt_jax.data.sources import labelled_images
from smt_jax.data.streams import held_out_part
from smt_jax.eval.measures import format_acc, mean_interval, wilson_interval
from smt_jax.eval.read import rnn_read_stats
from smt_jax.eval.suite import load_run_config
from smt_jax.eval.write import sample_rnn, scratch_prompt_memory

DATASETS = {  # name -> (config file, its `prepare` options)
  "digits": ("digits.py", digits.PREPARE),
  "mnist": ("mnist.py", mnist.PREPARE),
}
MIN_CLASSIFIER_ACC = 0.9  # The classifier scores completions only above this test accuracy.
NUM_HELD_OUT = 1024  # Test images read and completed per run (all of them where fewer).


class DigitClassifier:
  """A digit classifier on grey-level images [N, h, w]: an RBF support-vector machine on levels /
  (L - 1), trained on at most `max_train` real images.

  `test_acc` is its accuracy on held-out real images, measured when it is built; below
  MIN_CLASSIFIER_ACC it refuses to exist (ValueError), so no completion is scored by a
  classifier that cannot read real digits.
  """

  def __init__(self, train: tuple, test: tuple, levels: int, max_train: int = 10_000):
    from sklearn.svm import SVC

    self.levels = levels
    images, labels = train
    self.model = SVC().fit(self.features(images[:max_train]), labels[:max_train])
    self.test_acc = float(np.mean(self.predict(test[0]) == test[1]))
    if not self.test_acc > MIN_CLASSIFIER_ACC:
      raise ValueError(
        f"the digit classifier reads {self.test_acc:.3f} of the real test images, not above "
        f"{MIN_CLASSIFIER_ACC}: it cannot score completions"
      )

  @classmethod
  def for_dataset(cls, name: str) -> "DigitClassifier":
    """Trained on the real train images of `name`, prepared as the study's stream."""
    options = DATASETS[name][1]
    data = labelled_images(name, **options)
    return cls(data["train"], data["test"], options["levels"])

  def features(self, images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32).reshape(len(images), -1) / (self.levels - 1)

  def predict(self, images: np.ndarray) -> np.ndarray:
    return self.model.predict(self.features(images))


def runs(quick: bool, seeds: int) -> list:
  out = []
  for name in ("digits",) if quick else tuple(DATASETS):
    config = f"{DATASETS[name][0]}:quick={int(quick)}"
    out += text.model_runs(config, {"data": name}, seeds or 1, with_lm=False)
  return out


def per_image_bits(models, params, x: jax.Array, y: jax.Array, start) -> np.ndarray:
  """Bits per labelled pixel of each image [N]: the RNN reads x [N, L] from `start`
  (`read_start`) and predicts labels y [N, L] (-1 = no label)."""
  return text.per_sequence_bits(lambda b: rnn_read_stats(models, params, b, start), x, y)


def test_images(name: str) -> tuple[np.ndarray, np.ndarray]:
  """(grey levels [N, h, w], classes [N]) of the first NUM_HELD_OUT images of `name`'s test
  split: the second half of the held-out images, which no training batch or validation read."""
  images, labels = labelled_images(name, **DATASETS[name][1])["test"]
  return tuple(held_out_part(a, "test")[:NUM_HELD_OUT] for a in (images, labels))


def whole_images(images: np.ndarray) -> tuple[jax.Array, jax.Array]:
  """(x, y) [N, T] of images [N, h, w] read as pixel sequences: each pixel predicts the next
  (y = -1 at the last)."""
  x = jnp.asarray(images.reshape(len(images), -1), jnp.int32)
  return x, jnp.pad(x[:, 1:], ((0, 0), (0, 1)), constant_values=-1)


def teacher_column(result: dict, name: str) -> str:
  """The run's SMT teacher (`text.teacher_stage`) on `name`'s test images: bits per pixel over
  whole images with its 95 % interval over images ("—" for a run without a teacher). Kept in
  the run's report cache (records.cached)."""

  def teacher_bits():
    stage = text.teacher_stage(result)
    if stage is None:
      return None
    params, _ = load_params(str(stage / SUBDIR))
    read = text.teacher_read(load_run_config(str(stage)), jax.tree.map(jnp.asarray, params))
    return mean_interval(text.per_sequence_bits(read, *whole_images(test_images(name)[0])))

  bits = records.cached(result, f"teacher_bits/{name}/{NUM_HELD_OUT}", teacher_bits)
  return format_acc(*bits) if bits else "—"


def long_range(result: dict, classifier: DigitClassifier, best: bool = False) -> dict:
  """Of the run's read model (its last stage; best: that stage's best validation checkpoint,
  `text.read_dir`) on the test images (`test_images`), each mean
  with its 95 % interval over images: bits per pixel over the whole image read from x[0]
  (pixels 1 .. T-1); of pixels T/2+1 .. T-1 given the top half (read from x[0]) and read alone
  (from x[T/2]); the fraction of sampled completions of the top half (the RNN reads
  x[0..T/2-1] from its start, then writes T/2 pixels) that the classifier gives the real
  image's class (Wilson interval). Kept in the run's report cache (records.cached)."""
  which = "best" if best else "last"
  return records.cached(
    result, f"long_range/{which}/{NUM_HELD_OUT}", lambda: _long_range(result, classifier, best)
  )


def _long_range(result: dict, classifier: DigitClassifier, best: bool) -> dict:
  cfg = load_run_config(str(text.read_dir(result)))
  params, step = load_params(str(text.read_dir(result, best)))
  models, params, start = text.rnn_of(cfg, jax.tree.map(jnp.asarray, params))
  T = cfg.data.T
  images, labels = test_images(cfg.data.name)
  x, y_whole = whole_images(images)
  half = T // 2
  y_bottom = y_whole.at[:, :half].set(-1)
  m = scratch_prompt_memory(models, params, x[:, :half], start)
  key = jax.random.key(cfg.eval.seed)
  bottom = sample_rnn(models, params, m, key, T - half, cfg.eval.temperature, cfg.eval.top_k)
  completed = np.asarray(jnp.concatenate([x[:, :half], bottom], axis=1)).reshape(images.shape)
  same_class = int(np.sum(classifier.predict(completed) == labels))
  return {
    "step": step,
    "num_images": len(images),
    "bits_whole": mean_interval(per_image_bits(models, params, x, y_whole, start)),
    "bits_bottom_given_top": mean_interval(per_image_bits(models, params, x, y_bottom, start)),
    "bits_bottom_alone": mean_interval(
      per_image_bits(models, params, x[:, half:], y_bottom[:, half:], start)
    ),
    "completion_class": (same_class / len(images), wilson_interval(same_class, len(images))),
  }


def best_validation(result: dict) -> tuple[float, int, float]:
  """(bits per pixel, update, wall-clock s) of the run's lowest validation read along its
  learning curve (over all its stages); what early stopping on the validation split would keep."""
  updates, wall, curve = text.learning_curve(result, 1)
  i = min(range(len(curve)), key=curve.__getitem__)
  return curve[i], updates[i], wall[i]


def verdict(results: list, measured: dict) -> str:
  """Per non-gated updater: SMT -> DMT against BPTT in test bits per pixel and completion class
  (ahead = both better, the intervals apart), with each one's wall-clock, both validation reads
  at SMT -> DMT's wall-clock (`text.equal_wall_reads`) and at its updates (`text.equal_data_reads`),
  and BPTT's best validation read beside SMT -> DMT's (`best_validation`: a BPTT that overfits
  its budget)."""
  by = {(r["run"]["tags"]["updater"], r["run"]["tags"]["method"]): r for r in results}
  parts = []
  for u in text.UPDATERS:
    smt, bptt = by.get((u, "SMT→DMT")), by.get((u, "BPTT"))
    if smt is None or bptt is None:
      continue
    a, b = measured[smt["run"]["name"]], measured[bptt["run"]["name"]]
    lower_bits = a["bits_whole"][1][1] < b["bits_whole"][1][0]
    more_class = a["completion_class"][1][0] > b["completion_class"][1][1]
    (best_a, _, _), (best_b, step_b, wall_b) = best_validation(smt), best_validation(bptt)
    parts.append(
      f"{u}: SMT→DMT {a['bits_whole'][0]:.3f} bits per pixel and completion class "
      f"{a['completion_class'][0]:.3f} in {reporting.run_wall(smt):.0f} s, BPTT "
      f"{b['bits_whole'][0]:.3f} and {b['completion_class'][0]:.3f} in "
      f"{reporting.run_wall(bptt):.0f} s — the paper's claim "
      + ("holds" if lower_bits and more_class else "does not hold")
      + " here ("
      + ("fewer bits" if lower_bits else "not fewer bits with the intervals apart")
      + ", "
      + ("more" if more_class else "not more")
      + f" completions of the right class); {text.equal_wall_reads(smt, bptt)}; "
      f"{text.equal_data_reads(smt, bptt)}; best validation "
      f"reads: SMT→DMT {best_a:.3f}, BPTT {best_b:.3f} (update {step_b}, {wall_b:.0f} s)"
    )
  return "; ".join(parts) or "not enough finished runs for a verdict"


def label_values(per_position: list) -> np.ndarray:
  """A per-position read as floats, NaN where it has no label (None)."""
  return np.array([np.nan if v is None else v for v in per_position], float)


def halves(per_position: list, T: int) -> tuple[float, float]:
  """Mean bits per pixel at positions t < T/2 and t >= T/2 of a per-position read (position t
  predicts pixel t + 1; None: no label there)."""
  values = label_values(per_position)[:T]
  return float(np.nanmean(values[: T // 2])), float(np.nanmean(values[T // 2 :]))


def row_means(per_position: list, width: int) -> list[float]:
  """Mean bits per pixel of each image row (positions [row * width, (row + 1) * width); None:
  no label there) of a per-position read."""
  return [float(v) for v in np.nanmean(label_values(per_position).reshape(-1, width), axis=1)]


def teacher_gap(result: dict) -> dict | None:
  """Where the run's RNN loses to its teacher, from the final evaluations (eval.json: `read` on
  the test images, `drift` from m_empty) of its stages: bits per pixel of the teacher and of the
  RNN read from x[0], over the top and the bottom half (`halves`); the one-step error of each
  stage's RNN that has a drift evaluation (MSE of one update from the encoder's memory, mean
  over the image); and the last stage's drift (MSE of the RNN's memory, read from m_empty, to
  the encoder's) after T/4, T/2, 3T/4 and T pixels. None for a run without a teacher or those
  evaluations."""
  ev = text.eval_json(result)
  roles = ev.get("read", {}).get("roles", {})
  if "teacher" not in roles or "drift" not in ev:
    return None
  curves, T = ev["read"]["curves"], ev["read"]["T"]
  drift = ev["drift"]["drift"]
  one_step = {}
  for stage in result["stages"]:
    path = text.stage_dir(result, stage) / "eval.json"
    stage_eval = json.loads(path.read_text()) if path.is_file() else {}
    if "drift" in stage_eval:
      one_step[stage] = stage_eval["drift"]["one_step_mean"]
  return {
    "teacher": halves(curves[roles["teacher"]]["bits_per_position"], T),
    "rnn": halves(curves[roles["rnn"]]["bits_per_position"], T),
    "one_step": one_step,
    "drift": [drift[len(drift) * q // 4 - 1] for q in (1, 2, 3, 4)],
  }


TEACHER_GAP_HEADERS = [
  "updater",
  "method",
  "teacher bits top / bottom",
  "RNN bits top / bottom",
  "RNN − teacher top / bottom",
  "one-step error per stage",
  "drift after T/4, T/2, 3T/4, T pixels",
]


def teacher_gap_table(results: list) -> str:
  """`teacher_gap` of every run with a teacher, as a Markdown table ("" where there is none)."""
  rows = []
  for r in results:
    gap = teacher_gap(r)
    if gap is None:
      continue
    (t_top, t_bottom), (r_top, r_bottom) = gap["teacher"], gap["rnn"]
    tags = r["run"]["tags"]
    rows.append(
      [
        tags["updater"],
        tags["method"],
        f"{t_top:.3f} / {t_bottom:.3f}",
        f"{r_top:.3f} / {r_bottom:.3f}",
        f"{r_top - t_top:+.3f} / {r_bottom - t_bottom:+.3f}",
        ", ".join(f"{s} {v:.4f}" for s, v in gap["one_step"].items()),
        ", ".join(f"{v:.4f}" for v in gap["drift"]),
      ]
    )
  return reporting.md_table(TEACHER_GAP_HEADERS, rows) if rows else ""


def teacher_gap_section(results: list, rep: reporting.Report, name: str) -> str:
  """The report's diagnosis of each RNN against its teacher along the image: `teacher_gap_table`
  and `row_plot` (image rows of `name`'s test images)."""
  width = test_images(name)[0].shape[-1]
  table = teacher_gap_table(results)
  caption = (
    "**Along the image: each RNN against its teacher** (the final evaluation of each stage, "
    "eval.json: its read of the evaluation's test images, and the drift of the RNN's memory "
    "read from m_empty to the encoder's memory of the same pixels, mean squared difference "
    "per memory float; one-step error: the same difference after one update from the "
    "encoder's memory, the quantity SMT trains; top / bottom: positions before and after T/2)."
  )
  parts = [f"{caption}\n\n{table}"] if table else []
  parts.append(row_plot(results, rep, name, width))
  return "\n\n".join(parts) + "\n\n"


def row_plot(results: list, rep: reporting.Report, name: str, width: int) -> str:
  """Bits per pixel by image row (positions t in [row * width, (row + 1) * width), from the read
  model's final evaluation) of every run's read from x[0], and, dashed, of each teacher: does a
  model lose the image's top as it reads down?"""
  curves = {}
  for i, r in enumerate(results):
    ev = text.eval_json(r)
    roles = ev.get("read", {}).get("roles", {})
    label = f"{r['run']['tags']['method']} ({r['run']['tags']['updater']})"
    for role, suffix, style in (("rnn", "", "-"), ("teacher", " teacher", "--")):
      if role in roles:
        by_row = row_means(ev["read"]["curves"][roles[role]]["bits_per_position"], width)
        curves[label + suffix] = (list(range(len(by_row))), by_row, f"C{i % 10}.{style}")
  return rep.curves_plot(
    f"{name}_by_row.png", curves, "image row", "bits per pixel", "loss by image row"
  )


def sample_grids(results: list, rep: reporting.Report) -> str:
  """Each run's sample grid (its read model's samples.png: real images, completions of their
  top halves, samples from scratch), copied beside the report."""
  out = []
  for r in results:
    path = text.stage_dir(r, list(r["stages"])[-1]) / "samples.png"
    if path.is_file():
      tags, name = r["run"]["tags"], r["run"]["name"]
      link = rep.image(f"samples_{name}.png", path, f"samples of {name}")
      out.append(f"**{tags['method']} ({tags['updater']})**\n\n{link}")
  return "\n\n".join(out)


LONG_RANGE_HEADERS = [
  "test bits/pixel from x[0] [95 %]",
  "bottom given top",
  "bottom alone",
  "completion class [95 %]",
  "test bits/pixel at best validation [95 %] (update)",
  "best validation bits (update, s)",
]


def report(results: list, rep: reporting.Report) -> str:
  parts = []
  for name in DATASETS:
    rs = [r for r in results if r["run"]["tags"]["data"] == name]
    if not rs:
      continue
    classifier = DigitClassifier.for_dataset(name)
    measured = {r["run"]["name"]: long_range(r, classifier) for r in rs}
    at_best = {
      r["run"]["name"]: long_range(r, classifier, best=True)
      for r in rs
      if text.read_dir(r, best=True).is_dir()
    }

    def reads(r):
      m, b = measured[r["run"]["name"]], at_best.get(r["run"]["name"])
      keys = ("bits_whole", "bits_bottom_given_top", "bits_bottom_alone", "completion_class")
      best_bits, update, wall = best_validation(r)
      curve = f"{best_bits:.3f} ({update}, {wall:.0f} s)"
      test_at_best = f"{format_acc(*b['bits_whole'])} ({b['step']})" if b else "—"
      return [format_acc(*m[k]) for k in keys] + [test_at_best, curve]

    rows = text.table_rows(rs, reads, teacher=lambda r: teacher_column(r, name))
    headers = text.headers(LONG_RANGE_HEADERS)
    num_images = next(iter(measured.values()))["num_images"]
    parts.append(
      f"### {name}\n\n{reporting.md_table(headers, rows)}\n\n"
      f"Read on the {num_images} test images (the second half of the held-out images; no "
      "training batch or validation read used them), each mean with its 95 % interval over "
      "images. 'test bits/pixel': pixels 1 .. T-1 of each image, read from x[0]; 'bottom given "
      "top' and 'bottom alone': bits per pixel of the bottom half's pixels after the first, read "
      "after the top half or alone (from x[T/2]); 'completion class': the fraction of sampled "
      "completions of the top halves (the RNN reads the top half itself, then writes the bottom) "
      "that the classifier gives the real image's class; 'at best validation': test bits per "
      "pixel of the checkpoint with the lowest validation read (ckpt.keep_best; '—' for a run "
      "that kept none), the other test columns read the last checkpoint; 'best validation "
      "bits': the run's lowest read on the validation split along its learning curve. "
      "The classifier reads "
      f"{classifier.test_acc:.3f} of the real test images (an RBF support-vector machine on the "
      f"grey levels, trained on the real train images; it scores only above "
      f"{MIN_CLASSIFIER_ACC}). Teacher test bits: the SMT teacher on the same test images (at "
      "every pixel the encoder's memory of the pixels up to it, decoded with an empty future)."
      "\n\n"
      f"**Verdict:** {verdict(rs, measured)}.\n\n"
      f"{teacher_gap_section(rs, rep, name)}"
      f"Learning curves (validation bits per pixel):\n\n"
      f"{text.curves_plots(rs, rep, name, 'pixel')}\n\n"
      f"**Samples** (each run's read model):\n\n{sample_grids(rs, rep)}\n"
    )
  return (
    "\n".join(parts)
    + "\nEvery RNN reads whole images itself: SMT→DMT from m_empty, BPTT from its initial "
    "memory.\n"
  )


STUDY = runner.Study(
  name="pixels",
  title="Study 7: pixels (MNIST 14 x 14, digits), every RNN read from x[0]",
  claim="On MNIST SMT → DMT is more data-efficient than BPTT of the same non-gated updater, "
  "which shows recency bias; its samples capture stroke structure.",
  runs=runs,
  report=report,
  pool="realdata",
)


if __name__ == "__main__":
  runner.main(STUDY)
