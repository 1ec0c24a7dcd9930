"""Pixels: scikit-learn's 8 x 8 digits (1,797 images, 17 grey levels), one whole image per
sequence (T = 64), on the x[0] recipe (experiments/configs/__init__.py: real_data_config): SMT
with the full-past streaming teacher, DMT from m_empty over the whole image, BPTT of the same RNN
and the causal Transformer LM baseline at the same width, every model read from x[0].

The stream keeps the digits' own 17 grey levels as tokens 0..16 (`prepare digits --levels 17`),
so the read is bits per pixel over a 17-token vocabulary. Sequences start at an image boundary
and cover one whole image; the extra read and the completions start after the top half
(eval.prefix = T / 2 = 4 rows).

  python -m smt_jax.data.prepare digits --levels 17
  python experiments/run.py --config=experiments/configs/digits.py --workdir=workdirs/digits
  python experiments/run.py --config=experiments/configs/digits.py:quick=1 --workdir=DIR  # smoke
"""

from experiments.configs import parse_int_args, real_data_config
from smt_jax.data.streams import DEFAULT_ROOT, reduced_dir

PREPARE = {"levels": 17}  # Options of `python -m smt_jax.data.prepare digits`.
# Updates per stage. BPTT's give it at least SMT -> DMT's wall-clock at the two methods' update
# rates on these data (docs/results.md, study 7, reports both wall-clocks).
BUDGETS = {"smt": 2000, "dmt": 1000, "bptt": 20000, "lm": 3000}
QUICK = {"smt": 20, "dmt": 10, "bptt": 30, "lm": 20}  # quick=1: a smoke run.


def get_config(arg: str = ""):
  quick = parse_int_args(arg, {"quick": 0})["quick"]
  path = str(DEFAULT_ROOT / reduced_dir("digits", **PREPARE))
  return real_data_config(
    "digits", path, PREPARE["levels"], 8 * 8, QUICK if quick else BUDGETS, lm_depth=3
  )
