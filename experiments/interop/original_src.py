"""The PyTorch original's source checkout, for the scripts that run it (they need torch)."""

import argparse
import os
import sys

DEFAULT_SRC = os.path.join(
  os.path.dirname(__file__), "..", "..", "..", "shared", "peer", "smt-original", "src"
)


def parse_args_with_original(ap: argparse.ArgumentParser) -> argparse.Namespace:
  """ap's arguments plus --original (the original's src/ folder, holding model.py); puts that
  folder first on sys.path so that `import model` imports the original."""
  ap.add_argument("--original", default=DEFAULT_SRC, help="the original's src/ folder")
  args = ap.parse_args()
  sys.path.insert(0, os.path.abspath(args.original))
  return args
