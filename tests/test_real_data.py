"""Real-data evaluation: bits beside nats, pixel sequences of whole images, downsampled MNIST."""

import gzip
import json
import math
import struct

import jax
import ml_collections
import numpy as np
import pytest
from conftest import make_tiny_config

from smt_jax.data import make_dataset
from smt_jax.data.prepare import main as prepare_main
from smt_jax.errors import ConfigError
from smt_jax.eval import evaluate
from smt_jax.models import init_params
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
  from smt_jax.eval import format_table

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
  with pytest.raises(ValueError, match=r"data\.vocab_size=256: .* set it to 4"):
    make_dataset(stream_config("mnist", out))
  assert prepare_main(["mnist", "--src", str(tmp_path), "--out", str(out), "--size", "3"]) == 1
