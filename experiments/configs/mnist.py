"""Pixels: MNIST at 14 x 14 with 16 grey levels, one whole image per sequence (T = 196), on the
x[0] recipe (experiments/configs/__init__.py: real_data_config): SMT with the full-past
streaming teacher, DMT from m_empty over the whole image, BPTT of the same RNN and the causal
Transformer LM baseline at the same width, every model read from x[0].

The paper trains on 28 x 28 images (T = 784, 256 grey levels); this config averages 2 x 2 blocks
and quantises into 16 equal bins (`prepare mnist --size 14 --levels 16`, smt_jax/data/sources.py:
downsample) so that a run fits about an hour on 2 CPU cores. Sequences start at an image
boundary and cover one whole image; the read is bits per pixel over pixels 1..195 and the next
image's first pixel. The extra read and the completions start after the top half (eval.prefix =
T / 2 = 7 rows).

  python -m smt_jax.data.prepare mnist --size 14 --levels 16
  python experiments/run.py --config=experiments/configs/mnist.py --workdir=workdirs/mnist
  python experiments/run.py --config=experiments/configs/mnist.py:quick=1 --workdir=DIR  # smoke

Paper scale, for a GPU: model.d_model 256, model.num_heads 8, model.mem_tokens 16, encoder 8 /
decoder 4 / updater 8 / readout 4 blocks, Tf 64, train.batch_size 128, model.dtype "bfloat16".
"""

from experiments.configs import parse_int_args, real_data_config
from smt_jax.data.streams import DEFAULT_ROOT, reduced_dir

PREPARE = {"size": 14, "levels": 16}  # Options of `python -m smt_jax.data.prepare mnist`.
# Updates per stage. BPTT's give it at least SMT -> DMT's wall-clock at the stages' idle update
# rates on these data (experiments/bench/rates.py; docs/results.md, study 7).
BUDGETS = {"smt": 1500, "dmt": 1000, "bptt": 14000, "lm": 2000}
QUICK = {"smt": 20, "dmt": 10, "bptt": 30, "lm": 20}  # quick=1: a smoke run.


def get_config(arg: str = ""):
  quick = parse_int_args(arg, {"quick": 0})["quick"]
  path = str(DEFAULT_ROOT / reduced_dir("mnist", **PREPARE))
  c = real_data_config(
    "mnist", path, PREPARE["levels"], 14 * 14, QUICK if quick else BUDGETS, lm_depth=3
  )
  # A 4-pixel decoder future: the teacher learns per update as fast as BPTT's RNN; 16 slows it
  # (docs/results.md, study 7, the teacher diagnosis).
  c.model.teacher.Tf = 4
  # Stream attention in blocks of two image rows: the same function as one dense block
  # (tests/test_stream.py), faster on CPU (experiments/bench/stage_cost.py; docs/results.md).
  c.model.teacher.stream_chunk = 28
  return c
