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
must exceed MIN_CLASSIFIER_ACC before it scores anything). Sample grids are each run's samples.png.
--quick runs digits only, with the configs' smoke budgets.
"""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import digits, mnist
from experiments.repro import reporting, runner, text
from smt_jax.checkpointing import load_params
from smt_jax.data.sources import labelled_images
from smt_jax.eval.measures import bits
from smt_jax.eval.read import rnn_read_stats
from smt_jax.eval.suite import load_run_config
from smt_jax.eval.write import sample_rnn, scratch_prompt_memory
from smt_jax.models import build_models, readout_from_decoder
from smt_jax.objectives import read_start, reads_through_decoder

DATASETS = {  # name -> (config file, its `prepare` options)
  "digits": ("digits.py", digits.PREPARE),
  "mnist": ("mnist.py", mnist.PREPARE),
}
MIN_CLASSIFIER_ACC = 0.9  # The classifier scores completions only above this test accuracy.
NUM_COMPLETIONS = 256  # Held-out top halves completed per run.


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


def long_range(result: dict, classifier: DigitClassifier) -> dict:
  """Of the run's read model (its last stage) on NUM_COMPLETIONS held-out images: bits per pixel
  of pixels T/2+1 .. T-1 given the top half (read from x[0] over the whole image) and read alone
  (from x[T/2]); the fraction of sampled completions of the top half (the RNN reads x[0..T/2-1]
  from its start, then writes T/2 pixels) that the classifier gives the real image's class."""
  stage = text.stage_dir(result, list(result["stages"])[-1])
  cfg = load_run_config(str(stage))
  params, _ = load_params(str(stage))
  params = jax.tree.map(jnp.asarray, params)
  if reads_through_decoder(cfg):
    params = readout_from_decoder(params)
  models, start, T = build_models(cfg), read_start(cfg), cfg.data.T
  images, labels = labelled_images(cfg.data.name, **DATASETS[cfg.data.name][1])["test"]
  images, labels = images[:NUM_COMPLETIONS], labels[:NUM_COMPLETIONS]
  x = jnp.asarray(images.reshape(len(images), -1), jnp.int32)
  half = T // 2
  y_bottom = jnp.pad(x[:, 1:], ((0, 0), (0, 1)), constant_values=-1).at[:, :half].set(-1)
  whole = rnn_read_stats(models, params, {"x": x, "y": y_bottom}, start)
  alone = rnn_read_stats(models, params, {"x": x[:, half:], "y": y_bottom[:, half:]}, start)
  m = scratch_prompt_memory(models, params, x[:, :half], start)
  key = jax.random.key(cfg.eval.seed)
  bottom = sample_rnn(models, params, m, key, T - half, cfg.eval.temperature, cfg.eval.top_k)
  completed = np.asarray(jnp.concatenate([x[:, :half], bottom], axis=1)).reshape(images.shape)
  mean_bits = lambda s: bits(float(s["loss_sum"].sum() / s["count"].sum()))
  return {
    "bits_bottom_given_top": mean_bits(whole),
    "bits_bottom_alone": mean_bits(alone),
    "completion_class": float(np.mean(classifier.predict(completed) == labels)),
  }


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


def report(results: list, rep: reporting.Report) -> str:
  parts = []
  for name in DATASETS:
    rs = [r for r in results if r["run"]["tags"]["data"] == name]
    if not rs:
      continue
    classifier = DigitClassifier.for_dataset(name)
    rows = []
    for r, row in zip(rs, text.table_rows(rs)):
      lr = long_range(r, classifier)
      rows.append(
        row[:5]
        + [text.fmt(lr["bits_bottom_given_top"]), text.fmt(lr["bits_bottom_alone"])]
        + [text.fmt(lr["completion_class"])]
        + row[5:]
      )
    headers = text.HEADERS[:5] + ["bottom given top", "bottom alone", "completion class"]
    parts.append(
      f"### {name}\n\n{reporting.md_table(headers + text.HEADERS[5:], rows)}\n\n"
      f"The completion classifier reads {classifier.test_acc:.3f} of the real test images "
      f"(an RBF support-vector machine on the grey levels; it scores only above "
      f"{MIN_CLASSIFIER_ACC}). "
      "'completion class': the fraction of sampled completions of held-out top halves that it "
      "gives the real image's class; 'bottom given top' and 'bottom alone': bits per pixel of the "
      "bottom half's pixels after the first, read after the top half or alone.\n\n"
      f"{text.curves_plots(rs, rep, name, 'pixel')}\n\n"
      f"**Samples** (each run's read model):\n\n{sample_grids(rs, rep)}\n"
    )
  return (
    "\n".join(parts)
    + "\nEvery RNN reads whole images itself: SMT→DMT from m_empty, BPTT from its initial "
    "memory. Bits per pixel over whole held-out images (pixels 1..T-1 and the next image's "
    "first).\n"
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
