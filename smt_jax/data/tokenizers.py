"""Tokenizers for the real-data streams (vocabulary 256 for bytes and pixels).

- ``ByteTokenizer``: text <-> its UTF-8 bytes (ASCII text maps one byte per character).
- ``PixelTokenizer``: uint8 images [N, H, W] <-> raster-scan pixel tokens [N * H * W]; tokens
  are grey levels 0 .. vocab_size - 1 (256 = raw bytes; fewer for quantised images).
- ``IdTokenizer``: ids of an outside tokenizer (the ``tokens`` dataset), decoded as numbers.
"""

import dataclasses

import numpy as np

VOCAB_SIZE = 256


def check_tokens(tokens: np.ndarray, vocab_size: int, where: str) -> None:
  """Raises a ValueError naming ``where`` and the first value outside [0, vocab_size)."""
  tokens = np.asarray(tokens)
  if tokens.dtype == np.uint8 and vocab_size >= 256:
    return
  bad = tokens[(tokens < 0) | (tokens >= vocab_size) | (tokens != np.round(tokens))]
  if bad.size:
    value = bad.flat[0].item()
    value = int(value) if float(value).is_integer() else value
    raise ValueError(f"{where}: value {value} is outside the token vocabulary [0, {vocab_size})")


@dataclasses.dataclass(frozen=True)
class ByteTokenizer:
  """Byte-level text tokenizer: one token per UTF-8 byte."""

  vocab_size: int = VOCAB_SIZE

  def encode(self, text: str) -> np.ndarray:
    """uint8[n_bytes] of ``text``."""
    return np.frombuffer(text.encode("utf-8"), np.uint8).copy()

  def decode(self, tokens) -> str | list[str]:
    """Text of int[n] tokens (invalid UTF-8 shows as U+FFFD); int[B, n] gives a list."""
    tokens = np.asarray(tokens)
    if tokens.ndim == 2:
      return [self.decode(row) for row in tokens]
    check_tokens(tokens, self.vocab_size, "ByteTokenizer.decode")
    return tokens.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


@dataclasses.dataclass(frozen=True)
class IdTokenizer:
  """Token ids of an outside tokenizer (e.g. BPE), shown as space-separated numbers."""

  vocab_size: int

  def decode(self, tokens) -> str | list[str]:
    """ "12 7 401" for int[n] tokens; int[B, n] gives a list."""
    tokens = np.asarray(tokens)
    if tokens.ndim == 2:
      return [self.decode(row) for row in tokens]
    return " ".join(str(int(t)) for t in tokens)


@dataclasses.dataclass(frozen=True)
class PixelTokenizer:
  """Raster-scan pixel tokenizer for grey images of shape (height, width) with vocab_size grey
  levels (tokens 0 .. vocab_size - 1)."""

  height: int
  width: int
  vocab_size: int = VOCAB_SIZE

  @property
  def pixels(self) -> int:
    return self.height * self.width

  def encode(self, images, where: str = "PixelTokenizer.encode") -> np.ndarray:
    """uint8[N * H * W] raster-scan tokens of integer images [N, H, W] with values (grey levels)
    in [0, vocab_size)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (self.height, self.width):
      raise ValueError(
        f"{where}: expected images of shape [N, {self.height}, {self.width}], got {images.shape}"
      )
    check_tokens(images, self.vocab_size, where)
    return images.astype(np.uint8).reshape(-1)

  def decode(self, tokens) -> np.ndarray:
    """uint8 images [..., n, H, W] of tokens [..., n * H * W], grey levels scaled to 0 .. 255
    (level l -> round(l * 255 / (vocab_size - 1)); the identity for 256 levels)."""
    tokens = np.asarray(tokens)
    if tokens.shape[-1] % self.pixels:
      raise ValueError(
        f"PixelTokenizer.decode: length {tokens.shape[-1]} is not a multiple of "
        f"{self.height}x{self.width}={self.pixels} pixels"
      )
    check_tokens(tokens, self.vocab_size, "PixelTokenizer.decode")
    grey = np.round(tokens * (255 / (self.vocab_size - 1))).astype(np.uint8)
    return grey.reshape(*tokens.shape[:-1], -1, self.height, self.width)
