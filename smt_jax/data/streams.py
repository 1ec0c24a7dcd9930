"""Token streams: prepared ``{train,test}.npy`` files, memory-mapped, sampled in random windows.

A prepared directory (written by ``python -m smt_jax.data.prepare NAME``) holds ``train.npy``
and ``test.npy`` (1-D uint8 token streams) and ``meta.json`` (``name``, ``kind`` "text" or
"pixels", ``image_shape``). ``sample(key, B, T)`` is a pure function of the key: it draws B
window starts from a NumPy generator seeded with the key's data and returns windows of T + 1
tokens as ``x = w[:, :-1]``, ``y = w[:, 1:]``.

Text windows start at any byte. Pixel windows start at an image boundary and run on through the
following images of the stream, so ``T = H*W`` gives one whole image as x (its last label is the
first pixel of the next image) and a larger ``T`` spans several images.
"""

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import jax
import numpy as np

from smt_jax.data.tokenizers import VOCAB_SIZE, ByteTokenizer, PixelTokenizer, check_tokens

DEFAULT_ROOT = Path("workdirs") / "data"  # prepared streams live in DEFAULT_ROOT / NAME by default


def stream_dir(name: str, path: str = "") -> Path:
  """Directory of a prepared stream: ``path`` if given, else ``DEFAULT_ROOT / name``."""
  return Path(path) if path else DEFAULT_ROOT / name


def numpy_rng(key: jax.Array) -> np.random.Generator:
  """A NumPy generator seeded by a JAX PRNG key (typed or raw uint32)."""
  return np.random.default_rng(np.asarray(jax.random.key_data(key)).reshape(-1).tolist())


@dataclasses.dataclass(frozen=True)
class TokenStream:
  """Random windows of a memory-mapped 1-D token stream; ``align`` = window start granularity."""

  name: str
  tokens: np.ndarray
  tokenizer: ByteTokenizer | PixelTokenizer
  align: int = 1

  vocab_size: ClassVar[int] = VOCAB_SIZE
  jittable: ClassVar[bool] = False

  def sample(self, key: jax.Array, batch_size: int, T: int) -> dict[str, np.ndarray]:
    """``{"x": int32[B, T], "y": int32[B, T]}`` with y[t] = x[t+1] in the stream."""
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


def open_stream(name: str, path: str, split: str) -> TokenStream:
  """Memory-maps ``split``.npy of a prepared stream; errors say how to prepare it."""
  directory = stream_dir(name, path)
  meta_path = directory / "meta.json"
  if not meta_path.is_file():
    raise FileNotFoundError(
      f"no prepared {name!r} data in {directory} (data.path={path!r}): run "
      f"`python -m smt_jax.data.prepare {name} --out {directory}` first"
    )
  meta = json.loads(meta_path.read_text())
  if meta.get("name") != name:
    raise ValueError(
      f"data.path={path!r} holds the {meta.get('name')!r} stream, not data.name={name!r}"
    )
  file = directory / f"{split}.npy"
  tokens = np.load(file, mmap_mode="r")
  if tokens.ndim != 1:
    raise ValueError(f"{file}: expected a 1-D token stream, got shape {tokens.shape}")
  check_tokens(tokens, VOCAB_SIZE, str(file))
  if meta["kind"] == "pixels":
    tokenizer = PixelTokenizer(*meta["image_shape"])
    return TokenStream(name, tokens, tokenizer, align=tokenizer.pixels)
  return TokenStream(name, tokens, ByteTokenizer())
