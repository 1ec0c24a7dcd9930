"""Token streams: prepared ``{train,test}.npy`` files, memory-mapped, sampled in random windows.

The held-out file serves two splits that never share a window: "val" samples from its first
half, "test" from its second (``held_out_part``).

A prepared directory (written by ``python -m smt_jax.data.prepare NAME``) holds ``train.npy``
and ``test.npy`` (1-D uint8 token streams) and ``meta.json`` (``name``, ``kind`` "text" or
"pixels", ``image_shape``, ``vocab_size``: 256, or the grey levels of a quantised pixel
stream). ``sample(key, B, T)`` is a pure function of the key: it draws B window starts from a
NumPy generator seeded with the key's data and returns windows of T + 1 tokens as
``x = w[:, :-1]``, ``y = w[:, 1:]``.

Text windows start at any byte. A pixel sequence is whole images: its window starts at an image
boundary and T must be a multiple of H*W (``sample`` refuses any other T), so ``T = H*W`` gives
one whole image as x (pixel 0 is read, pixels 1 .. H*W-1 are labels, and the last label is the
first pixel of the next image) and ``T = n*H*W`` gives n consecutive images. No sequence can
then cut an image or be mostly its border.
"""

import dataclasses
import json
import re
from pathlib import Path
from typing import ClassVar

import jax
import numpy as np

from smt_jax.data.tokenizers import (
  VOCAB_SIZE,
  ByteTokenizer,
  IdTokenizer,
  PixelTokenizer,
  check_tokens,
)

DEFAULT_ROOT = Path("workdirs") / "data"  # prepared streams live in DEFAULT_ROOT / NAME by default


def stream_dir(name: str, path: str = "") -> Path:
  """Directory of a prepared stream: ``path`` if given, else ``DEFAULT_ROOT / name``."""
  return Path(path) if path else DEFAULT_ROOT / name


def reduced_dir(name: str, size: int = 0, levels: int = VOCAB_SIZE) -> str:
  """The default folder name of pixel stream `name` at `size` px (0 = native) and `levels`
  grey levels: NAME itself when neither is reduced, else e.g. "mnist-14px-16levels"."""
  parts = ([f"{size}px"] if size else []) + ([f"{levels}levels"] if levels != VOCAB_SIZE else [])
  return "-".join([name] + parts)


def prepare_command(
  name: str, directory: Path, size: int = 0, levels: int = 0, force: bool = False
) -> str:
  """The command that writes stream `name` into `directory`: with --size and --levels where
  given, else as a `reduced_dir` folder name records them (a folder named otherwise: neither)."""
  named = re.fullmatch(re.escape(name) + r"(?:-(\d+)px)?(?:-(\d+)levels)?", directory.name)
  recorded_size, recorded_levels = named.groups() if named else (None, None)
  size, levels = size or recorded_size, levels or recorded_levels
  options = (f" --size {size}" if size else "") + (f" --levels {levels}" if levels else "")
  return f"python -m smt_jax.data.prepare {name}{options} --out {directory}" + " --force" * force


def numpy_rng(key: jax.Array) -> np.random.Generator:
  """A NumPy generator seeded by a JAX PRNG key (typed or raw uint32)."""
  return np.random.default_rng(np.asarray(jax.random.key_data(key)).reshape(-1).tolist())


@dataclasses.dataclass(frozen=True)
class TokenStream:
  """Random windows of a memory-mapped 1-D token stream; ``align`` = window start granularity,
  and T must be a multiple of it (pixel streams: H*W, so sequences are whole images)."""

  name: str
  tokens: np.ndarray
  tokenizer: ByteTokenizer | PixelTokenizer | IdTokenizer
  align: int = 1
  vocab_size: int = VOCAB_SIZE

  jittable: ClassVar[bool] = False

  def sample(self, key: jax.Array, batch_size: int, T: int) -> dict[str, np.ndarray]:
    """``{"x": int32[B, T], "y": int32[B, T]}`` with y[t] = x[t+1] in the stream."""
    if T % self.align:
      shape = "x".join(map(str, (self.tokenizer.height, self.tokenizer.width)))
      raise ValueError(
        f"T={T} cuts the {shape} = {self.align}-pixel images of the {self.name!r} stream "
        f"mid-way: a pixel sequence is whole images, so T must be a multiple of {self.align} "
        f"(T = {self.align} is one image)"
      )
    n_starts = (len(self.tokens) - T - 1) // self.align + 1
    if T < 1 or n_starts < 1:
      raise ValueError(
        f"T={T}: the {self.name!r} stream has {len(self.tokens)} tokens, needs T + 1 <= that "
        "and T >= 1"
      )
    starts = numpy_rng(key).integers(0, n_starts, batch_size) * self.align
    windows = np.asarray(self.tokens[starts[:, None] + np.arange(T + 1)], np.int32)
    return {"x": windows[:, :-1], "y": windows[:, 1:]}

  def decode(self, tokens) -> str | list[str] | np.ndarray:
    """Text (str, or a list per row) or uint8 images [..., n, H, W]."""
    return self.tokenizer.decode(tokens)


HELD_OUT_PARTS = ("val", "test")  # Splits read from the held-out file: its halves, in this order.


def held_out_part(tokens: np.ndarray, split: str, align: int = 1) -> np.ndarray:
  """The tokens of ``split``: all of them for "train"; for "val" / "test" the first / second
  half of the held-out stream, cut at a multiple of ``align`` (an image boundary for pixels), so
  that no window of one split overlaps one of the other."""
  if split not in HELD_OUT_PARTS:
    return tokens
  cut = len(tokens) // align // 2 * align
  return tokens[:cut] if split == "val" else tokens[cut:]


def _file_split(split: str) -> str:
  """The prepared file a split reads: test.npy (or its kin) for both held-out splits."""
  return "test" if split in HELD_OUT_PARTS else split


def open_stream(name: str, path: str, split: str) -> TokenStream:
  """Memory-maps ``split``.npy of a prepared stream; errors say how to prepare it."""
  directory = stream_dir(name, path)
  meta_path = directory / "meta.json"
  if not meta_path.is_file():
    raise FileNotFoundError(
      f"no prepared {name!r} data in {directory} (data.path={path!r}): run "
      f"`{prepare_command(name, directory)}` first"
    )
  meta = json.loads(meta_path.read_text())
  if meta.get("name") != name:
    raise ValueError(
      f"data.path={path!r} holds the {meta.get('name')!r} stream, not data.name={name!r}"
    )
  file = directory / f"{_file_split(split)}.npy"
  tokens = np.load(file, mmap_mode="r")
  if tokens.ndim != 1:
    raise ValueError(f"{file}: expected a 1-D token stream, got shape {tokens.shape}")
  vocab = int(meta.get("vocab_size", VOCAB_SIZE))
  check_tokens(tokens, vocab, str(file))
  if meta["kind"] == "pixels":
    tokenizer = PixelTokenizer(*meta["image_shape"], vocab_size=vocab)
    tokens = held_out_part(tokens, split, tokenizer.pixels)
    return TokenStream(name, tokens, tokenizer, align=tokenizer.pixels, vocab_size=vocab)
  return TokenStream(name, held_out_part(tokens, split), ByteTokenizer())


TOKENS = "tokens"  # data.name of a user's own token stream
TOKEN_DTYPES = ("uint8", "uint16", "int32")
TOKEN_FILES = {"train": ("train.npy", "train.bin"), "test": ("test.npy", "test.bin", "val.bin")}


def open_tokens(path: str, split: str, vocab_size: int) -> TokenStream:
  """A user's token stream (``data.name = "tokens"``) from ``data.path``.

  The folder holds ``train.npy`` and ``test.npy`` (1-D arrays), or nanoGPT-style ``train.bin``
  and ``val.bin`` (or ``test.bin``: raw ids of ``meta.json``'s "dtype", default uint16), of
  uint8, uint16 or int32 ids. An optional ``meta.json`` may give "vocab_size" (then it must equal
  ``vocab_size``, i.e. data.vocab_size), "dtype" and "tokenizer" ("byte": samples decode as
  UTF-8 text; otherwise they show as ids). Every id must be in [0, vocab_size). The "val" and
  "test" splits read the halves of the held-out file (``held_out_part``).
  """
  directory = stream_dir(TOKENS, path)
  if not directory.is_dir():
    raise FileNotFoundError(
      f"data.path={path!r}: no folder {directory}; put train.npy and test.npy (or nanoGPT's "
      f"train.bin and val.bin) there, or run `python -m smt_jax.data.prepare tokens --src "
      f"FILE.txt --tokenizer byte --out {directory}`"
    )
  meta_path = directory / "meta.json"
  try:
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
  except ValueError as e:
    raise ValueError(f"{meta_path}: not JSON ({e})") from None
  names = TOKEN_FILES[_file_split(split)]
  file = next((directory / f for f in names if (directory / f).is_file()), None)
  if file is None:
    raise FileNotFoundError(
      f"data.path={path!r}: {directory} has no {' or '.join(names)} for the {split} split"
    )
  if file.suffix == ".npy":
    tokens = np.load(file, mmap_mode="r")
  else:
    dtype = meta.get("dtype", "uint16")
    if dtype not in TOKEN_DTYPES:
      raise ValueError(f"{meta_path}: dtype {dtype!r} must be one of {TOKEN_DTYPES}")
    tokens = np.memmap(file, dtype=dtype, mode="r")
  if tokens.ndim != 1 or tokens.dtype.name not in TOKEN_DTYPES:
    raise ValueError(
      f"{file}: expected a 1-D stream of {'/'.join(TOKEN_DTYPES)} ids, got {tokens.dtype.name} "
      f"of shape {tokens.shape}"
    )
  if "vocab_size" in meta and int(meta["vocab_size"]) != vocab_size:
    raise ValueError(
      f"data.vocab_size={vocab_size} differs from the vocabulary in {meta_path} "
      f"({meta['vocab_size']}); set data.vocab_size={meta['vocab_size']}"
    )
  if tokens.size:
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
      raise ValueError(
        f"{file}: ids span [{low}, {high}], outside data.vocab_size={vocab_size}; set "
        f"data.vocab_size to at least {high + 1} (the tokenizer's vocabulary size)"
      )
  byte = meta.get("tokenizer") == "byte" and vocab_size == VOCAB_SIZE
  tokenizer = ByteTokenizer() if byte else IdTokenizer(vocab_size)
  return TokenStream(TOKENS, held_out_part(tokens, split), tokenizer, vocab_size=vocab_size)
