"""Text: the King James Bible (4.1 MB of English, one byte per token, vocabulary 256), 128
bytes per sequence, on the x[0] recipe (experiments/configs/__init__.py: real_data_config): SMT
with the full-past streaming teacher, DMT from m_empty over the whole sequence, BPTT of the same
RNN and the causal Transformer LM baseline at the same width, every model read from x[0]. The
read is bits per character (byte) on held-out text (the last ~10 %, from Revelation back).

  python -m smt_jax.data.prepare kjv
  python experiments/run.py --config=experiments/configs/kjv.py --workdir=workdirs/kjv
  python experiments/run.py --config=experiments/configs/kjv.py:quick=1 --workdir=DIR  # smoke
  python experiments/run.py --config=experiments/configs/kjv.py:T=64 --workdir=DIR  # T = 64

TinyStories runs the same recipe with --config.data.name=tinystories --config.data.path=DIR
after `python -m smt_jax.data.prepare tinystories --src SRC --out DIR`.

Paper scale, for a GPU: data.T 1024 (256+), model.d_model 256, model.num_heads 8,
model.mem_tokens 16, encoder 8 / decoder 4 / updater 8 / readout 4 blocks, Tc 256, Tf 64,
train.batch_size 128, model.dtype "bfloat16".
"""

from experiments.configs import parse_int_args, real_data_config

# Updates per stage; BPTT (of every updater) and the LM each get at least SMT -> DMT's wall-clock
# at the idle rates of experiments/bench/results/rates_cpu.json (`rates.py --study text`;
# docs/results.md, study 8), with a margin for the rates' spread between passes, and not much more,
# so that each run's last read is close to a read at SMT -> DMT's wall-clock.
BUDGETS = {"smt": 1500, "dmt": 1000, "bptt": 8000, "lm": 15000}
QUICK = {"smt": 20, "dmt": 10, "bptt": 30, "lm": 20}  # quick=1: a smoke run.


def get_config(arg: str = ""):
  """arg "quick=1" for the smoke budgets, "T=64" for another sequence length (the scaling study)."""
  a = parse_int_args(arg, {"quick": 0, "T": 128})
  c = real_data_config("kjv", "", 256, a["T"], QUICK if a["quick"] else BUDGETS, lm_depth=3)
  # Stream attention in blocks of 32 positions: the same function as one dense block
  # (tests/test_stream.py), faster on CPU (experiments/bench/stage_cost.py; docs/results.md).
  c.model.teacher.stream_chunk = 32
  # Each memory decodes its next byte only, and every memory of a sequence is decoded: the
  # teacher's read (the next byte from its memory) is then all of its decoder loss, over all T + 1
  # memories, and it learns much faster per update than with 16 future bytes from 32 memories,
  # at about the same cost (measured: docs/results.md, study 8).
  c.model.teacher.Tf = 1
  c.smt.n_dec = 0
  return c
