"""The PyTorch original's source checkout, for the scripts that run it (they need torch)."""

import argparse
import os
import sys

# Where the original's src/ folder sits beside this repository's checkout (a sibling folder
# shared/peer/smt-original, as the project's machines lay it out); --original names any other.
DEFAULT_SRC = os.path.join(
  os.path.dirname(__file__), "..", "..", "..", "shared", "peer", "smt-original", "src"
)


def parse_args_with_original(ap: argparse.ArgumentParser) -> argparse.Namespace:
  """ap's arguments plus --original (the original's src/ folder, holding model.py); puts that
  folder first on sys.path so that `import model` imports the original. Without model.py there,
  or without torch and x-transformers, the script exits with status 1 and one line saying what
  to pass."""
  ap.add_argument("--original", default=DEFAULT_SRC, help="the original's src/ folder")
  args = ap.parse_args()
  src = os.path.abspath(args.original)
  if not os.path.isfile(os.path.join(src, "model.py")):
    sys.exit(
      f"error: --original={src} holds no model.py; pass --original=DIR, the src/ folder of a "
      "checkout of https://github.com/akarshkumar0101/smt."
    )
  try:
    import torch  # noqa: F401
    import x_transformers  # noqa: F401
  except ImportError as e:
    sys.exit(
      f"error: {e.name} is not installed in {sys.executable}; run this script with a Python that "
      "has torch, x-transformers and einops."
    )
  sys.path.insert(0, src)
  return args
