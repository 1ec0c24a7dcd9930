"""Bring-your-own tokens (`data.name = "tokens"`), its preparation from text, and TensorBoard
event files."""

import json
import pathlib
import struct

import numpy as np
import pytest
from conftest import load_config

from smt_jax.config import strict
from smt_jax.data import make_dataset
from smt_jax.data.prepare import main as prepare_main
from smt_jax.train import train_and_evaluate
from smt_jax.train.metrics import read_metrics
from smt_jax.train.validate import validate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tokens_config(path, vocab_size):
  cfg = strict(load_config("smoke.py"))
  cfg.data.name, cfg.data.path, cfg.data.vocab_size = "tokens", str(path), vocab_size
  return cfg


def write_npy(folder: pathlib.Path, dtype, high=1000, n=3000, meta=None):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    ids = rng.integers(0, high, n).astype(dtype)
    ids[7] = high - 1  # The largest id occurs.
    np.save(folder / f"{split}.npy", ids)
  if meta is not None:
    (folder / "meta.json").write_text(json.dumps(meta))
  return folder


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_npy_ids_of_each_dtype_are_sampled_in_windows(dtype, tmp_path):
  high = 200 if dtype == np.uint8 else 1000
  folder = write_npy(tmp_path, dtype, high)
  ds = make_dataset(tokens_config(folder, high).data, "train")
  assert ds.vocab_size == high
  batch = ds.sample(np.array([0, 1], np.uint32), 4, 16)
  tokens = np.load(folder / "train.npy")
  for x, y in zip(batch["x"], batch["y"]):  # y[t] = x[t+1], and windows come from the stream.
    np.testing.assert_array_equal(x[1:], y[:-1])
    start = next(i for i in range(len(tokens) - 16) if np.array_equal(tokens[i : i + 16], x))
    assert tokens[start + 16] == y[-1]
  assert ds.decode(batch["x"][0, :3]) == " ".join(str(int(t)) for t in batch["x"][0, :3])


def test_nanogpt_bin_files_with_meta_dtype_and_vocab(tmp_path):
  ids = (np.arange(5000) * 7919 % 50257).astype(np.uint16)
  ids.tofile(tmp_path / "train.bin")
  ids[:1000].tofile(tmp_path / "val.bin")
  (tmp_path / "meta.json").write_text(json.dumps({"vocab_size": 50257}))  # dtype: uint16 default
  cfg = tokens_config(tmp_path, 50257)
  validate(cfg)
  val, test = (make_dataset(cfg.data, s) for s in ("val", "test"))
  assert test.vocab_size == 50257 and len(val.tokens) == len(test.tokens) == 500
  np.testing.assert_array_equal(np.concatenate([val.tokens, test.tokens]), ids[:1000])

  cfg.data.vocab_size = 50000
  with pytest.raises(Exception, match=r"differs from the vocabulary in .*meta.json \(50257\)"):
    validate(cfg)
  (tmp_path / "meta.json").write_text(json.dumps({"dtype": "int32"}))
  np.arange(100, dtype=np.int32).tofile(tmp_path / "train.bin")
  cfg.data.vocab_size = 100
  assert make_dataset(cfg.data, "train").tokens.dtype == np.int32


def test_bad_token_files_are_named(tmp_path):
  np.save(tmp_path / "train.npy", np.zeros(100, np.float32))
  np.save(tmp_path / "test.npy", np.zeros(100, np.float32))
  with pytest.raises(ValueError, match="expected a 1-D stream of uint8/uint16/int32 ids"):
    make_dataset(tokens_config(tmp_path, 10).data, "train")
  np.save(tmp_path / "train.npy", np.array([0, 3, -1], np.int32))
  with pytest.raises(ValueError, match=r"ids span \[-1, 3\]"):
    make_dataset(tokens_config(tmp_path, 10).data, "train")
  (tmp_path / "test.npy").unlink()
  with pytest.raises(FileNotFoundError, match="no test.npy or test.bin or val.bin"):
    make_dataset(tokens_config(tmp_path, 10).data, "test")


def test_prepare_tokens_from_a_text_file(tmp_path, capsys):
  text = "".join(f"line {i}: the quick brown fox\n" for i in range(100))
  (tmp_path / "corpus.txt").write_text(text)
  out = tmp_path / "tok"
  argv = ["tokens", "--src", str(tmp_path / "corpus.txt"), "--tokenizer", "byte", "--out", str(out)]
  assert prepare_main(argv) == 0
  meta = json.loads((out / "meta.json").read_text())
  assert meta["tokenizer"] == "byte" and meta["vocab_size"] == 256
  train, test = np.load(out / "train.npy"), np.load(out / "test.npy")
  assert bytes(np.concatenate([train, test])).decode() == text
  ds = make_dataset(tokens_config(out, 256).data, "train")
  assert ds.decode(train[:6]) == "line 0"
  assert prepare_main(argv) == 1 and "--force" in capsys.readouterr().err
  assert prepare_main(["tokens", "--src", str(tmp_path / "missing.txt")]) == 2


def read_events(folder: pathlib.Path) -> list:
  """Event protos of the TFRecord event files in folder (length, crc, data, crc records)."""
  from tensorboardX.proto import event_pb2

  events = []
  for path in sorted(folder.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    i = 0
    while i < len(data):
      (length,) = struct.unpack("<Q", data[i : i + 8])
      event = event_pb2.Event()
      event.ParseFromString(data[i + 12 : i + 12 + length])
      events.append(event)
      i += 12 + length + 4
  return events


@pytest.mark.integration
def test_smoke_config_trains_on_tokens_of_vocab_1000_with_tensorboard(tmp_path):
  folder = write_npy(tmp_path / "data", np.uint16, 1000, meta={"vocab_size": 1000})
  cfg = tokens_config(folder, 1000)
  cfg.log.tensorboard = True
  cfg.log.plot = True
  cfg.train.final_eval = False  # Decoding ids is checked above; this keeps the test short.
  workdir = tmp_path / "run"
  final = train_and_evaluate(cfg, workdir)
  assert final["step"] == 6 and np.isfinite(final["loss"])
  assert 0 <= final["rnn_acc"] <= 1

  events = read_events(workdir)
  scalars = {(v.tag, e.step): v.simple_value for e in events for v in e.summary.value}
  rows = read_metrics(workdir / "metrics.jsonl")
  assert rows
  for r in rows:
    assert scalars[(f"{r['split']}/loss", r["step"])] == pytest.approx(r["loss"], rel=1e-6)
  images = [v.tag for e in events for v in e.summary.value if v.HasField("image")]
  assert "plots/curves" in images
