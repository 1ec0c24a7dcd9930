"""Real-data evaluation: bits beside nats, pixel sequences of whole images, downsampled MNIST."""

import gzip
import importlib
import json
import math
import shutil
import struct

import jax
import ml_collections
import numpy as np
import pytest
from conftest import make_tiny_config, random_batch

from smt_jax.data import make_dataset
from smt_jax.data.prepare import main as prepare_main
from smt_jax.data.sources import labelled_images
from smt_jax.errors import ConfigError
from smt_jax.eval import evaluate, format_table, resolve_eval, summarize
from smt_jax.models import build_models, init_params, param_counts, readout_from_decoder
from smt_jax.objectives import lm_loss, method_of, read_start, reads_through_decoder
from smt_jax.train.pipeline import read_model_size, stage_config, stage_names
from smt_jax.train.step import make_eval_fn
from smt_jax.train.validate import validate


def write_pixel_stream(directory, height, width, tokens, name="digits", vocab_size=256):
  """A prepared pixel stream holding `tokens` in both splits, as smt_jax.data.prepare lays it."""
  directory.mkdir(parents=True)
  meta = {"name": name, "kind": "pixels", "image_shape": [height, width], "vocab_size": vocab_size}
  (directory / "meta.json").write_text(json.dumps(meta))
  for split in ("train", "test"):
    np.save(directory / f"{split}.npy", np.asarray(tokens, np.uint8))


def stream_config(name, path, vocab_size=256):
  return ml_collections.ConfigDict(
    {"name": name, "vocab_size": vocab_size, "path": str(path), "kwargs": {}}
  )


# --- bits ----------------------------------------------------------------------------------------


def test_uniform_readout_reads_log2_v_bits_per_token(tmp_path):
  """Zero output heads give uniform logits over V = 7 tokens: ln 7 nats = log2 7 bits per token,
  for the RNN and the teacher, in eval.json and its table."""
  cfg = make_tiny_config()
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  zero_head = lambda tree: jax.tree.map(np.zeros_like, tree)
  params["decoder"]["head"] = zero_head(params["decoder"]["head"])
  cfg.model.rnn.readout_from_decoder = False  # The RNN reads through its own (zeroed) readout.
  params["readout"]["decoder"]["head"] = zero_head(params["readout"]["decoder"]["head"])
  cfg.eval.update({"sections": ("read", "length"), "num_batches": 1, "lengths": (8,)})
  summary = evaluate(cfg, params, str(tmp_path))
  assert json.loads((tmp_path / "eval.json").read_text())["bits_unit"] == "bits per token"
  for curve in summary["read"]["curves"].values():
    assert curve["loss"] == pytest.approx(math.log(7), rel=1e-5)
    assert curve["bits"] == pytest.approx(math.log2(7), rel=1e-5)
    assert all(b == pytest.approx(math.log2(7), rel=1e-5) for b in curve["bits_per_position"] if b)
  assert summary["length"]["rnn_bits"] == [pytest.approx(math.log2(7), rel=1e-5)]
  assert f"{math.log2(7):6.3f}" in format_table(summary)


# --- pixel sequences are whole images ------------------------------------------------------------


def test_pixel_sequences_start_at_image_boundaries_and_cover_whole_images(tmp_path):
  """A stream of 10 numbered 2x3 images (image i holds pixels 6i .. 6i + 5): every sequence is
  n consecutive whole images, and a T that cuts an image is refused."""
  write_pixel_stream(tmp_path / "s", 2, 3, np.arange(60))
  ds = make_dataset(stream_config("digits", tmp_path / "s"))
  for images in (1, 3):
    T = 6 * images
    x, y = (ds.sample(jax.random.key(images), 200, T)[k] for k in ("x", "y"))
    first = x[:, 0]
    assert np.all(first % 6 == 0) and len(set(first.tolist())) > 3
    np.testing.assert_array_equal(x, first[:, None] + np.arange(T))  # whole images, in order
    np.testing.assert_array_equal(y, x + 1)
    assert ds.decode(x).shape == (200, images, 2, 3)
  with pytest.raises(ValueError, match=r"T=8 cuts the 2x3 = 6-pixel images .* multiple of 6"):
    ds.sample(jax.random.key(0), 1, 8)


def test_a_config_that_cuts_images_is_a_config_error(tmp_path):
  write_pixel_stream(tmp_path / "s", 2, 4, np.arange(160) % 256)
  cfg = make_tiny_config(**{"data.name": "digits", "data.vocab_size": 256})
  cfg.data.path = str(tmp_path / "s")
  validate(cfg)  # T = 8: one 2x4 image.
  for field, value in (("data.T", 12), ("eval.lengths", (8, 20))):
    bad = make_tiny_config(**{"data.name": "digits", "data.vocab_size": 256, field: value})
    bad.data.path = str(tmp_path / "s")
    bad.model.teacher.Tc = 4
    with pytest.raises(ConfigError, match=rf"{field}=\d+ cuts the 2x4 = 8-pixel images"):
      validate(bad)


def write_idx(path, images):
  data = b"\x00\x00\x08\x03" + struct.pack(">3i", *images.shape) + images.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(data))


def test_prepare_mnist_downsamples_and_quantises(tmp_path):
  """A 4x4 image to 2x2 at 4 grey levels, by hand: block means 127.5, 16, 100, 251.25 ->
  floor(mean * 4 / 256) = 1, 0, 1, 3."""
  image = np.array(
    [[0, 255, 16, 16], [255, 0, 16, 16], [100, 100, 240, 255], [100, 100, 255, 255]], np.uint8
  )
  for stem in ("train", "t10k"):
    write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz", np.stack([image, 255 - image]))
  out = tmp_path / "out"
  args = ["mnist", "--src", str(tmp_path), "--out", str(out), "--size", "2", "--levels", "4"]
  assert prepare_main(args) == 0
  meta = json.loads((out / "meta.json").read_text())
  assert meta["image_shape"] == [2, 2] and meta["vocab_size"] == 4 and meta["name"] == "mnist"
  # The second image 255 - x: block means 127.5, 239, 155, 3.75 -> 1, 3, 2, 0.
  assert np.load(out / "train.npy").tolist() == [1, 0, 1, 3, 1, 3, 2, 0]
  ds = make_dataset(stream_config("mnist", out, vocab_size=4))
  assert ds.vocab_size == 4
  np.testing.assert_array_equal(ds.decode(np.array([1, 0, 1, 3])), [[[85, 0], [85, 255]]])
  with pytest.raises(ValueError) as wrong:
    make_dataset(stream_config("mnist", out))
  assert str(wrong.value).endswith(
    "has 4 token values; set data.vocab_size to 4, or prepare it at 256 grey levels: "
    f"`python -m smt_jax.data.prepare mnist --size 2 --levels 256 --out {out} --force`"
  )
  assert prepare_main(["mnist", "--src", str(tmp_path), "--out", str(out), "--size", "3"]) == 1


# --- the Transformer LM baseline -----------------------------------------------------------------


@pytest.mark.integration
def test_lm_loss_and_read_equal_a_loop_over_prefixes():
  """The LM's loss, and the read the trainer evaluates it by, equal a Python loop in which the
  logits for y[t] come from the model applied to the prefix x[:t+1] alone (so nothing after t
  is seen)."""
  cfg = make_tiny_config(method="lm")
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(1))
  batch = random_batch(jax.random.key(2), 3, cfg.data.T, cfg.data.vocab_size, label_every=2)
  models = build_models(cfg)
  x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
  nll, hits = [], []
  for t in range(cfg.data.T):
    logits = np.asarray(models.lm_logits(params, batch["x"][:, : t + 1])[:, t], np.float64)
    for b in range(x.shape[0]):
      if y[b, t] >= 0:
        log_z = np.log(np.exp(logits[b] - logits[b].max()).sum()) + logits[b].max()
        nll.append(log_z - logits[b, y[b, t]])
        hits.append(int(np.argmax(logits[b]) == y[b, t]))
  loss, metrics = lm_loss(params, batch, jax.random.key(0), cfg)
  assert float(loss) == pytest.approx(np.mean(nll), rel=1e-5)
  assert float(metrics["acc"]) == pytest.approx(np.mean(hits))
  _, stats = make_eval_fn(cfg)(params, batch, jax.random.key(0))
  assert set(stats) == {"rnn"}
  assert summarize(stats["rnn"])["loss"] == pytest.approx(np.mean(nll), rel=1e-5)
  grads = jax.grad(lambda p: lm_loss(p, batch, None, cfg)[0])(params)
  for group in ("encoder", "updater", "readout"):
    assert all(not np.any(g) for g in jax.tree.leaves(grads[group])), group


def test_param_counts_per_group_and_the_lm_read_model():
  tree = {"a": {"w": np.zeros((3, 4)), "b": np.zeros(4)}, "c": {"v": np.zeros((2, 2, 2))}}
  assert param_counts(tree) == {"a": 16, "c": 8}
  cfg = make_tiny_config(method="lm")
  counts = param_counts(init_params(cfg, jax.random.key(0)))
  assert read_model_size(cfg) == counts["decoder"]
  cfg.method = "bptt"
  assert read_model_size(cfg) == counts["updater"] + counts["readout"]


def test_lm_evaluates_like_the_rnns(tmp_path):
  cfg = make_tiny_config(method="lm")
  cfg.eval.update({"num_batches": 1, "lengths": (8, 16)})
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  summary = evaluate(cfg, params, str(tmp_path))
  assert list(summary["read"]["curves"]) == ["transformer LM from x[0] (causal)"]
  curve = summary["read"]["curves"]["transformer LM from x[0] (causal)"]
  assert curve["bits"] == pytest.approx(curve["loss"] / math.log(2))
  assert len(summary["length"]["rnn_bits"]) == 2
  assert summary["params"]["read_model"] == param_counts(params)["decoder"]
  lines = (tmp_path / summary["write"]["file"]).read_text().splitlines()
  labels = [line.split("]")[0] for line in lines[:4]]
  assert labels == ["=== sample 0", "[data", "[prompt", "[scratch"]
  prompts = [line.split("] ", 1)[1].split(" || ")[0] for line in lines[1:3]]
  assert prompts[0] == prompts[1], "the LM continues the data's prompt"
  asked = make_tiny_config(method="lm", **{"eval.sections": ("drift", "length", "write")})
  assert resolve_eval(asked).sections == ("length", "write")


def test_lm_samples_equal_a_loop_that_rereads_the_sequence_so_far():
  """sample_lm against a Python loop: at each step the LM reads the prompt and the tokens drawn
  so far, and the next token is drawn from its logits at the last position with that step's
  key (temperature 1, top 5)."""
  from smt_jax.eval.write import sample_lm, sample_logits

  cfg = make_tiny_config(method="lm")
  models = build_models(cfg)
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  prompt = jax.random.randint(jax.random.key(1), (3, 4), 0, cfg.data.vocab_size)
  key, length = jax.random.key(2), 6
  drawn = sample_lm(models, params, prompt, key, length, temperature=1.0, top_k=5)
  seq = prompt
  for step_key in jax.random.split(key, length):
    token = sample_logits(step_key, models.lm_logits(params, seq)[:, -1], 1.0, 5)
    seq = jax.numpy.concatenate([seq, token[:, None]], axis=1)
  np.testing.assert_array_equal(drawn, seq[:, 4:])
  assert drawn.shape == (3, length) and len(np.unique(np.asarray(drawn))) > 1


# --- the real-data configs -----------------------------------------------------------------------


def fake_kjv_stream(path) -> None:
  """A prepared 'kjv' stream of 4096 bytes per split (validation reads its meta and shapes)."""
  path.mkdir()
  (path / "meta.json").write_text(json.dumps({"name": "kjv", "kind": "text"}))
  for split in ("train", "test"):
    np.save(path / f"{split}.npy", np.arange(4096).astype(np.uint8))


@pytest.mark.parametrize("name", ["digits", "mnist", "kjv"])
def test_real_data_configs_validate_and_trace_every_stage(name, tmp_path):
  """Each stage of digits.py, mnist.py and kjv.py validates against a stream shaped like the one
  its docstring prepares, and one training step's loss traces (abstractly: no compile)."""
  module = importlib.import_module(f"experiments.configs.{name}")
  cfg = module.get_config()
  options = getattr(module, "PREPARE", {})
  if name == "kjv":
    fake_kjv_stream(tmp_path / "s")
  else:
    side, levels = options.get("size", 8), options["levels"]
    tokens = np.arange(side * side * 20) % levels
    write_pixel_stream(tmp_path / "s", side, side, tokens, name, levels)
  cfg.data.path = str(tmp_path / "s")
  assert set(stage_names(cfg)) >= {"smt", "dmt", "bptt", "lm"}
  T = cfg.data.T
  batch = {k: jax.ShapeDtypeStruct((cfg.train.batch_size, T), np.int32) for k in ("x", "y")}
  for stage in stage_names(cfg):
    run = stage_config(cfg, stage, tmp_path)
    validate(run, init_from_pending=run.ckpt.init_from.startswith(str(tmp_path)))
    params = jax.eval_shape(lambda: init_params(run, jax.random.key(0)))
    loss, _ = jax.eval_shape(
      lambda p, b: method_of(run).loss(p, b, jax.random.key(0), run), params, batch
    )
    assert loss.shape == ()
  assert cfg.pipeline.stages.dmt.ckpt.init_from == "smt" and cfg.dmt.start == -1
  keep_best = {
    stage: stage_config(cfg, stage, tmp_path).ckpt.keep_best for stage in stage_names(cfg)
  }
  assert keep_best == {"smt": "", "dmt": "rnn_loss", "bptt": "rnn_loss", "lm": "rnn_loss"}
  assert cfg.model.teacher.encoder == "stream" and cfg.model.teacher.Tc == T


# --- study 7's completion classifier, the studies' runs ------------------------------------------


def test_completion_classifier_reads_real_digits_and_refuses_when_it_cannot():
  pytest.importorskip("sklearn")
  from experiments.repro.pixels import MIN_CLASSIFIER_ACC, DigitClassifier

  classifier = DigitClassifier.for_dataset("digits")
  assert classifier.test_acc > MIN_CLASSIFIER_ACC
  data = labelled_images("digits", levels=17)
  images, labels = data["test"]
  assert np.mean(classifier.predict(images) == labels) == classifier.test_acc
  shuffled = np.random.default_rng(0).permutation(data["train"][1])
  with pytest.raises(ValueError, match=r"digit classifier reads 0\.\d+ of the real test images"):
    DigitClassifier((data["train"][0], shuffled), data["test"], 17)


def test_study_runs_cover_the_methods():
  from experiments.repro import pixels, text

  kinds = lambda runs: {
    (r.tags["updater"], r.tags["method"], tuple(r.overrides["pipeline.order"])) for r in runs
  }
  expected = {
    ("transformer", "SMT→DMT", ("smt", "dmt")),
    ("mlp", "SMT→DMT", ("smt", "dmt")),
    ("transformer", "BPTT", ("bptt",)),
    ("mlp", "BPTT", ("bptt",)),
    ("gru", "BPTT", ("bptt",)),
  }
  assert kinds(text.runs(False, 0)) == expected | {("—", "LM", ("lm",))}
  assert kinds(pixels.runs(False, 0)) == expected
  assert {r.tags["data"] for r in pixels.runs(False, 0)} == {"digits", "mnist"}


def test_pixels_report_carries_each_runs_sample_grid(tmp_path):
  from experiments.repro import pixels, reporting

  results = []
  for name, draws in (("digits_mlp_smt-dmt_s0", True), ("digits_gru_bptt_s0", False)):
    stage = tmp_path / name / "dmt"
    stage.mkdir(parents=True)
    if draws:
      (stage / "samples.png").write_bytes(b"\x89PNG grid of " + name.encode())
    tags = {"method": "SMT→DMT", "updater": "mlp"}
    results.append(
      {"workdir": str(tmp_path / name), "stages": {"dmt": {}}, "run": {"name": name, "tags": tags}}
    )
  out = tmp_path / "report"
  out.mkdir()
  rep = reporting.Report(pixels.STUDY, out, quick=False)
  text = pixels.sample_grids(results, rep)
  assert rep.plots == ["samples_digits_mlp_smt-dmt_s0.png"]  # The run without a grid is skipped.
  assert (out / rep.plots[0]).read_bytes() == b"\x89PNG grid of digits_mlp_smt-dmt_s0"
  assert (
    text
    == "**SMT→DMT (mlp)**\n\n![samples of digits_mlp_smt-dmt_s0](samples_digits_mlp_smt-dmt_s0.png)"
  )


def test_per_image_bits_average_to_the_batch_read():
  from experiments.repro.pixels import per_image_bits
  from smt_jax.eval.read import rnn_read_stats
  from smt_jax.objectives import read_start

  cfg = make_tiny_config()
  models = build_models(cfg)
  params = init_params(cfg, jax.random.key(0))
  x = jax.random.randint(jax.random.key(1), (5, 8), 0, 7)
  y = jax.numpy.pad(x[:, 1:], ((0, 0), (0, 1)), constant_values=-1)  # 7 labels in every row.
  per_image = per_image_bits(models, params, x, y, read_start(cfg))
  batch = rnn_read_stats(models, params, {"x": x, "y": y}, read_start(cfg))
  assert per_image.shape == (5,) and len(set(np.round(per_image, 6))) == 5
  whole = float(batch["loss_sum"].sum() / batch["count"].sum()) / math.log(2)
  np.testing.assert_allclose(per_image.mean(), whole, rtol=1e-5)


def test_pixel_test_images_are_the_held_out_half_no_validation_read_uses():
  from experiments.repro.pixels import NUM_HELD_OUT, test_images

  all_test, all_labels = labelled_images("digits", levels=17)["test"]
  images, labels = test_images("digits")
  assert len(images) == min(NUM_HELD_OUT, len(all_test) - len(all_test) // 2) == 180
  np.testing.assert_array_equal(images, all_test[180:])
  np.testing.assert_array_equal(labels, all_labels[180:])


@pytest.mark.integration  # A study driver's evaluation of a checkpoint: the second tier.
def test_long_range_reads_whole_images_halves_and_completions(tmp_path):
  """pixels.long_range of a run's RNN on the test digits, against batch reads of the same images
  (whole image; bottom half given the top; bottom half alone, read from its first pixel) and a
  stand-in classifier that sees every completion: each keeps its real top half."""
  from experiments.repro import pixels
  from smt_jax.checkpointing import Checkpointer
  from smt_jax.eval.read import rnn_read_stats, teacher_read_stats

  cfg = make_tiny_config(**{"data.name": "digits", "data.vocab_size": 17, "data.T": 64})
  stage = tmp_path / "run" / "smt"
  stage.mkdir(parents=True)
  (stage / "config.json").write_text(cfg.to_json_best_effort())
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  ckpt = Checkpointer(stage / "checkpoints")
  ckpt.save(9, params, {"unused": np.zeros(1)})
  ckpt.close()
  images, labels = pixels.test_images("digits")
  x = images.reshape(len(images), 64).astype(np.int32)

  class Classifier:  # Right on the first 45 completions, wrong on the rest.
    def predict(self, completed):
      np.testing.assert_array_equal(completed.reshape(-1, 64)[:, :32], x[:, :32])
      return np.where(np.arange(len(completed)) < 45, labels, labels + 1)

  out = pixels.long_range({"workdir": str(tmp_path / "run"), "stages": {"smt": {}}}, Classifier())
  models, start = build_models(cfg), read_start(cfg)
  assert reads_through_decoder(cfg)  # SMT's RNN reads through its copy of the decoder.
  read_params = readout_from_decoder(params)

  def bits(tokens, first_label):  # Pooled bits per labelled pixel, labels from first_label on.
    y = np.full(tokens.shape, -1)
    y[:, first_label:-1] = tokens[:, first_label + 1 :]
    stats = rnn_read_stats(models, read_params, {"x": tokens, "y": y}, start)
    return float(stats["loss_sum"].sum() / stats["count"].sum()) / math.log(2)

  assert out["step"] == 9 and out["num_images"] == len(images) == 180
  for field, expected in (
    ("bits_whole", bits(x, 0)),
    ("bits_bottom_given_top", bits(x, 32)),
    ("bits_bottom_alone", bits(x[:, 32:], 0)),
  ):
    mean, (lo, hi) = out[field]
    assert mean == pytest.approx(expected, rel=1e-4) and lo < mean < hi, field
  assert out["completion_class"][0] == 45 / 180
  teacher = teacher_read_stats(models, params, {"x": x, "y": np.pad(x[:, 1:], ((0, 0), (0, 1)))})
  teacher_bits = float(teacher["loss_sum"][:-1].sum() / teacher["count"][:-1].sum()) / math.log(2)
  column = pixels.teacher_column(
    {"workdir": str(tmp_path / "run"), "stages": {"smt": {}}}, "digits"
  )
  assert column.startswith(f"{teacher_bits:.3f} [")


def pixel_result(tmp_path, name, method, wall_s, curve=()):
  """A finished study run whose one stage logged validation `curve` [(elapsed s, bits)]."""
  stage = tmp_path / name / "bptt"
  stage.mkdir(parents=True)
  rows = [{"split": "train", "step": i, "elapsed_s": w} for i, (w, _) in enumerate(curve)]
  rows += [
    {"split": "eval", "step": i, "rnn_loss": b * math.log(2)} for i, (_, b) in enumerate(curve)
  ]
  (stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  tags = {"updater": "transformer", "method": method}
  stages = {"bptt": {"wall_s": wall_s, "steps": len(curve)}}
  return {"workdir": str(tmp_path / name), "stages": stages, "run": {"name": name, "tags": tags}}


@pytest.mark.parametrize(
  "smt_bits,smt_class,holds",
  [((2.0, (1.9, 2.1)), (0.8, (0.7, 0.9)), True), ((2.4, (2.3, 2.5)), (0.8, (0.7, 0.9)), False)],
)
def test_pixels_verdict_needs_fewer_bits_and_more_right_classes(
  tmp_path, smt_bits, smt_class, holds
):
  from experiments.repro import pixels

  results = [
    pixel_result(tmp_path, "smt", "SMT→DMT", 100.0, [(50.0, 2.2), (95.0, 2.1)]),
    pixel_result(tmp_path, "bptt", "BPTT", 150.0, [(40.0, 3.0), (90.0, 2.4), (140.0, 2.6)]),
  ]
  measured = {
    "smt": {"bits_whole": smt_bits, "completion_class": smt_class},
    "bptt": {"bits_whole": (2.5, (2.35, 2.65)), "completion_class": (0.5, (0.4, 0.6))},
  }
  text = pixels.verdict(results, measured)
  assert "best validation reads: SMT→DMT 2.100, BPTT 2.400 (update 1, 90 s)" in text
  # SMT -> DMT took 100 s: BPTT's last read by then is its second (90 s), not its third (140 s).
  assert "(100 s, measured) the validation reads are SMT→DMT 2.100, BPTT 2.400 (update 1)" in text
  # SMT -> DMT's last read is at update 1: BPTT's last read by then is its second.
  assert (
    "at SMT→DMT's 1 updates (the same images seen) the validation reads are SMT→DMT 2.100, "
    "BPTT 2.400 (update 1)" in text
  )
  assert ("claim holds" in text) == holds and ("claim does not hold" in text) == (not holds)


def test_text_budgets_give_each_baseline_smt_dmts_idle_wall_clock_and_not_twice_it():
  """Study 8's runs at the idle rates that experiments/bench/rates.py measured: BPTT of each
  updater trains at least as long as SMT -> DMT of that updater, the GRU and the LM at least as
  long as the slower SMT -> DMT; none more than twice as long, so their last reads are close to
  reads at SMT -> DMT's wall-clock."""
  from experiments.repro import reporting, runner, text

  rates = reporting.load_rates()
  idle = {}
  for run in text.runs(False, 1):
    idle[run.tags["updater"], run.tags["method"]] = runner.planned_idle_wall(run, rates)
  assert None not in idle.values(), "rates.py --study text has not measured every stage"
  smt_dmt = {u: idle[u, "SMT→DMT"] for u in text.UPDATERS}
  for (updater, method), wall in idle.items():
    if method == "SMT→DMT":
      continue
    own = smt_dmt.get(updater, max(smt_dmt.values()))
    assert own <= wall <= 2 * own, (updater, method, wall, own)


@pytest.mark.parametrize("bptt_at_100s,holds", [(2.05, True), (1.9, False)])
def test_text_verdict_compares_validation_reads_at_smt_dmts_wall_clock(
  tmp_path, bptt_at_100s, holds
):
  """SMT -> DMT's last read (2.1 at 95 s of its 100 s) against BPTT's last read by 100 s (the
  one at 90 s, not the lower one at 140 s): within 5 % when 2.1 <= 1.05 x BPTT's."""
  from experiments.repro import text

  results = [
    pixel_result(tmp_path, "smt", "SMT→DMT", 100.0, [(50.0, 2.2), (95.0, 2.1)]),
    pixel_result(tmp_path, "bptt", "BPTT", 150.0, [(40.0, 3.0), (90.0, bptt_at_100s), (140, 1.0)]),
  ]
  ends = {"smt": (2.3, (2.2, 2.4), 7), "bptt": (1.8, (1.7, 1.9), 9)}

  def read(result, best=False):  # Test reads at the ends; neither run kept a best checkpoint.
    return None if best else ends[result["run"]["name"]]

  verdict = text.verdict(results, read)
  assert verdict.startswith(
    f"transformer: at SMT→DMT's wall-clock (100 s, measured) the validation reads are SMT→DMT "
    f"2.100, BPTT {bptt_at_100s:.3f} (update 1) — " + ("within" if holds else "not within")
  )
  assert ("claim holds" in verdict) == holds
  assert verdict.endswith("test reads at their ends SMT→DMT 2.300 in 100 s, BPTT 1.800 in 150 s")


def test_learning_curve_at_idle_rates_and_the_read_at_a_wall_clock(tmp_path):
  """Two stages at idle rates 2 and 0.5 updates/s: a read at update u of a stage sits at the
  earlier stages' updates / rate plus u / rate, whatever the measured seconds were."""
  from experiments.repro import text

  evals = {"smt": [(100, 3.0), (200, 2.5)], "dmt": [(50, 2.0)]}
  for stage, reads in evals.items():
    (tmp_path / stage).mkdir()
    rows = [{"split": "train", "step": u, "elapsed_s": 7.0 * u} for u, _ in reads]
    rows += [{"split": "eval", "step": u, "rnn_loss": b * math.log(2)} for u, b in reads]
    (tmp_path / stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  result = {
    "workdir": str(tmp_path),
    "run": {"name": "run_s3", "tags": {}},
    "stages": {"smt": {"steps": 200, "wall_s": 1400.0}, "dmt": {"steps": 50, "wall_s": 350.0}},
  }
  rates = {"run/smt": 2.0, "run/dmt": 0.5}
  updates, wall, bits = text.learning_curve(result, 1, rates)
  assert updates == [100, 200, 250] and bits == pytest.approx([3.0, 2.5, 2.0])
  assert wall == [50.0, 100.0, 100.0 + 50 / 0.5]
  assert text.learning_curve(result, 1)[1] == [700.0, 1400.0, 1400.0 + 350.0]  # measured
  assert text.read_at_wall(result, 199.0, rates) == (pytest.approx(2.5), 200)
  assert text.read_at_wall(result, 200.0, rates) == (pytest.approx(2.0), 250)
  assert text.read_at_wall(result, 49.0, rates) is None
  assert text.read_at_updates(result, 249) == (pytest.approx(2.5), 200)
  assert text.read_at_updates(result, 250) == (pytest.approx(2.0), 250)
  assert text.read_at_updates(result, 99) is None
  assert text.has_idle_rates([result], rates) and not text.has_idle_rates([result], {})


@pytest.mark.integration  # A study driver's evaluation of a checkpoint: the second tier.
@pytest.mark.parametrize("method", ["bptt", "lm"])
def test_text_test_read_is_the_batch_read_with_an_interval(tmp_path, method):
  """text.test_read of a run's checkpoint (last, and best when kept): NUM_TEST test sequences
  read from x[0] one by one, chunked, against one batch read of the same sequences (every
  retrieval sequence has one label, so the mean over sequences is the pooled mean)."""
  from experiments.repro import text
  from smt_jax.checkpointing import Checkpointer
  from smt_jax.eval.read import lm_read_stats, rnn_read_stats

  cfg = make_tiny_config(method=method)
  stage = tmp_path / "run" / method
  stage.mkdir(parents=True)
  (stage / "config.json").write_text(cfg.to_json_best_effort())
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  for directory, step in ((stage / "checkpoints", 40), (stage / "best", 30)):
    ckpt = Checkpointer(directory)
    ckpt.save(step, params, {"unused": np.zeros(1)})
    ckpt.close()
  result = {"workdir": str(tmp_path / "run"), "stages": {method: {}}}
  mean, (lo, hi), step = text.test_read(result)
  batch = make_dataset(cfg.data, "test").sample(
    jax.random.key(text.TEST_SEED), text.NUM_TEST, cfg.data.T
  )
  models = build_models(cfg)
  if method == "lm":
    stats = lm_read_stats(models, params, batch)
  else:
    stats = rnn_read_stats(models, params, batch, read_start(cfg))  # BPTT: its initial memory.
  pooled = float(stats["loss_sum"].sum() / stats["count"].sum()) / math.log(2)
  assert step == 40 and mean == pytest.approx(pooled, rel=1e-4) and lo < mean < hi
  assert text.test_read(result, best=True)[2] == 30
  assert text.best_read(result).endswith("(30)")
  assert text.test_read({"workdir": str(tmp_path / "none"), "stages": {method: {}}}) is None


@pytest.mark.integration  # A study driver's evaluation of a checkpoint: the second tier.
@pytest.mark.parametrize("encoder", ["window", "stream"])
def test_teacher_test_read_is_the_batch_read_of_the_last_smt_stage(tmp_path, encoder):
  """text.teacher_test_read: the SMT teacher of a run's last SMT stage (not a later DMT stage's
  checkpoint), read at every position on the NUM_TEST test sequences, one by one, against one
  batch teacher read of the same sequences; None for a run without an SMT stage."""
  from experiments.repro import text
  from smt_jax.checkpointing import Checkpointer
  from smt_jax.eval.read import teacher_read_stats

  cfg = make_tiny_config(**{"model.teacher.encoder": encoder})
  init = jax.jit(lambda key: init_params(cfg, key))
  for stage, method, seed in (("smt", "smt", 0), ("dmt", "dmt", 1)):
    (tmp_path / "run" / stage).mkdir(parents=True)
    cfg.method = method
    (tmp_path / "run" / stage / "config.json").write_text(cfg.to_json_best_effort())
    ckpt = Checkpointer(tmp_path / "run" / stage / "checkpoints")
    ckpt.save(5, init(jax.random.key(seed)), {"unused": np.zeros(1)})
    ckpt.close()
  result = {"workdir": str(tmp_path / "run"), "stages": {"smt": {}, "dmt": {}}}
  mean, (lo, hi), step = text.teacher_test_read(result)
  batch = make_dataset(cfg.data, "test").sample(
    jax.random.key(text.TEST_SEED), text.NUM_TEST, cfg.data.T
  )
  stats = teacher_read_stats(build_models(cfg), init(jax.random.key(0)), batch)
  pooled = float(stats["loss_sum"].sum() / stats["count"].sum()) / math.log(2)
  assert step == 5 and mean == pytest.approx(pooled, rel=1e-4) and lo < mean < hi
  assert text.teacher_column(result) == f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
  dmt_only = tmp_path / "dmt_only"  # A run folder of its own: the read is kept in the run's cache.
  shutil.copytree(tmp_path / "run" / "dmt", dmt_only / "dmt")
  assert text.teacher_test_read({"workdir": str(dmt_only), "stages": {"dmt": {}}}) is None


# --- study 11: scaling ---------------------------------------------------------------------------


def test_scaling_runs_sweep_one_axis_at_a_time_and_validate(tmp_path):
  from experiments.repro import runner, scaling

  expected = {(64, 64, k) for k in (1, 2, 4, 8)} | {(64, d, 4) for d in (32, 128)}
  expected |= {(t, 64, 4) for t in (32, 128)}
  runs = scaling.runs(False, 0)
  assert {(r.tags["T"], r.tags["d"], r.tags["K"]) for r in runs} == expected
  assert len({r.name for r in runs}) == len(runs) == 8
  fake_kjv_stream(tmp_path / "s")
  for r in runs:
    cfg = runner.run_config(r)
    cfg.data.path = str(tmp_path / "s")
    assert (cfg.data.T, cfg.model.d_model, cfg.model.mem_tokens) == (
      r.tags["T"],
      r.tags["d"],
      r.tags["K"],
    )
    assert cfg.model.teacher.Tc == cfg.data.T and stage_names(cfg) == ("smt", "dmt")
    for stage in stage_names(cfg):
      run = stage_config(cfg, stage, tmp_path)
      assert run.train.num_steps == scaling.SCALING[stage]
      validate(run, init_from_pending=stage == "dmt")


def scaling_result(point: dict) -> dict:
  """A finished scaling run at `point` (its result.json's run part)."""
  from experiments.repro import scaling

  tags = {"data": "kjv", "updater": "transformer", "method": "SMT→DMT", **point}
  return {"run": {"name": scaling.point_name(point), "tags": tags}}


def test_scaling_verdict_needs_bits_to_fall_along_each_axis():
  from experiments.repro import scaling

  base = scaling.BASE
  points = [({**base, "K": k}, b) for k, b in ((1, 2.5), (2, 2.3), (8, 2.0))]
  points += [(base, 2.1), ({**base, "d": 32}, 2.05)]  # Wider (d 32 -> 64) is worse: a rise.
  points += [({**base, "T": 128}, 2.105)]  # Longer: 0.005 worse, within TOLERANCE.
  points += [({**base, "T": 32}, None)]  # Not finished: left out.
  results = [scaling_result(p) for p, _ in points]
  bits_of = {scaling.point_name(p): b for p, b in points}
  teacher_of = {name: 2.0 for name in bits_of}  # Gaps: K 0.5, 0.3, 0.1, 0.0; d 0.05, 0.1.
  text = scaling.verdict(results, bits_of, teacher_of)
  assert (
    "memory tokens K (1: 2.500, 2: 2.300, 4: 2.100, 8: 2.000) — falls at every step; "
    "RNN − teacher (+0.500, +0.300, +0.100, +0.000) — narrows at every step" in text
  )
  assert (
    "width d (32: 2.050, 64: 2.100) — rises by more than 0.01 bits at a step; RNN − teacher "
    "(+0.050, +0.100) — widens by more than 0.01 bits at a step" in text
  )
  assert (
    "context T (64: 2.100, 128: 2.105) — falls or holds (within 0.01 bits) at every step; "
    "RNN − teacher (+0.100, +0.105) — narrows or holds (within 0.01 bits) at every step" in text
  )


def test_teacher_gap_splits_the_image_and_picks_the_drift_quarters(tmp_path):
  """pixels.teacher_gap of a hand-written two-stage run (T = 8, images of 2 x 4 pixels): means
  over positions 0-3 and 4-6 (7 has no label), each stage's one-step error, the last stage's
  drift after 2, 4, 6 and 8 pixels; a run without a teacher gives None; the row plot draws the
  RNN and the teacher."""
  from experiments.repro import pixels, reporting

  teacher = [1.0, 2.0, 3.0, 4.0, 0.5, 1.0, 1.5, None]
  rnn = [2.0, 2.0, 4.0, 4.0, 1.0, 2.0, 3.0, None]
  roles = {"rnn": "rnn from x[0] (m_empty)", "rnn_enc": "rnn from prefix", "teacher": "teacher"}
  for stage, one_step in (("smt", 0.25), ("dmt", 0.5)):
    (tmp_path / "run" / stage).mkdir(parents=True)
    curves = {roles["rnn"]: {"bits_per_position": rnn}, "teacher": {"bits_per_position": teacher}}
    ev = {
      "read": {"T": 8, "curves": curves, "roles": roles},
      "drift": {"drift": [0.1 * (i + 1) for i in range(8)], "one_step_mean": one_step},
    }
    (tmp_path / "run" / stage / "eval.json").write_text(json.dumps(ev))
  tags = {"updater": "mlp", "method": "SMT→DMT"}
  result = {
    "workdir": str(tmp_path / "run"),
    "stages": {"smt": {}, "dmt": {}},
    "run": {"name": "r", "tags": tags},
  }
  gap = pixels.teacher_gap(result)
  assert gap["teacher"] == pytest.approx((2.5, 1.0)) and gap["rnn"] == pytest.approx((3.0, 2.0))
  assert gap["one_step"] == {"smt": 0.25, "dmt": 0.5}
  assert gap["drift"] == pytest.approx([0.2, 0.4, 0.6, 0.8])
  no_drift = dict(result, stages={"warmup": {}, **result["stages"]})  # No eval.json: skipped.
  assert pixels.teacher_gap(no_drift)["one_step"] == {"smt": 0.25, "dmt": 0.5}
  bptt = {"workdir": str(tmp_path / "none"), "stages": {"bptt": {}}, "run": {"name": "b"}}
  assert pixels.teacher_gap(bptt) is None
  row = pixels.teacher_gap_table([result, bptt]).splitlines()[-1]
  assert row == (
    "| mlp | SMT→DMT | 2.500 / 1.000 | 3.000 / 2.000 | +0.500 / +1.000 | smt 0.2500, dmt 0.5000 "
    "| 0.2000, 0.4000, 0.6000, 0.8000 |"
  )
  assert pixels.row_means(rnn, 4) == pytest.approx([3.0, 2.0])
  out = tmp_path / "report"
  out.mkdir()
  rep = reporting.Report(pixels.STUDY, out, quick=False)
  assert pixels.row_plot([result], rep, "digits", 4) == "![bits per pixel](digits_by_row.png)"
  assert (out / "digits_by_row.png").stat().st_size > 0
