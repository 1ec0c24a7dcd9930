"""Study 9 (experiments/repro/tasks.py): the paper's synthetic tasks at length, SMT -> DMT beside
BPTT of the same RNN, every RNN read from x[0].

  get_config("task=copy,T=64,quick=0"): task = one of VARIANTS, T = sequence length (default 32),
  quick = 1 for the reduced `--quick` budgets.

  python experiments/run.py --config=experiments/configs/tasks.py:task=stack,T=128 --workdir=DIR

Variants (VARIANTS; the PyTorch original's where it has one):
- copy: string copy, reversed as the original; the string fills the sequence (T / 2 symbols).
- keys_values: associative recall with `<query>`, values over every symbol; as many pairs as fit
  T (T / 4 - 1 pairs of 2 + 2 tokens), so the memory holds more pairs as T grows.
- keys_values_disjoint: the original's variant: keys from the lower half of the symbols, values
  from the upper half, the bare query key; pairs fill T likewise (V = 18: 8**2 = 64 distinct
  keys for the 63 pairs of T = 256).
- modular: in-context w * u + b mod 17 with w, b < int(0.2 * 17) = 3, no warmup (the original's).
- stack: push / pop with the depth bound growing with T (T / 4), so pops reach far back.

Settings follow repro_retrieval.py (measured there) but for a larger memory (memory_tokens: K = 8,
and for copy 16 floats per symbol of its string; with 8 the copy teacher stalls at T = 32 and at
T = 64: docs/results.md, study 9): the full-past streaming teacher (Tc = T) decoding
TEACHER_FUTURE tokens; SMT every position -1..T-1 up to T = 64 (at T = 64 decoding
DECODED_AT_64 of them), 32 sampled positions beyond; DMT from m_empty over the whole sequence with
gradients through the rollout (DMT_STAGE; lr budgets.dmt_lr(T)). The teacher trains until its
held-out accuracy reaches TEACHER_TARGET or its cap (train.stop_at_metric; the study reports the
updates it took). BPTT gets budgets.bptt_factor("tasks", T) times the SMT cap and DMT updates, and
stops early where its held-out accuracy from x[0] is 1.0 over the answers their past determines
(the rest of its budget cannot raise it there).
"""

import ml_collections

from experiments.configs import budgets, parse_int_args, smt_dmt_bptt_stages
from smt_jax.config import base_config
from smt_jax.errors import ConfigError

# Variant -> (data.name, data.vocab_size, data.kwargs as a function of T, chance at an answer).
VARIANTS = {
  "copy": ("copy", 8, lambda T: {"reverse": True}, 1 / 6),
  "keys_values": ("keys_values", 18, lambda T: {"n_pairs": 0}, 1 / 16),
  "keys_values_disjoint": (
    "keys_values",
    18,
    lambda T: {"n_pairs": 0, "disjoint": True},
    1 / 8,
  ),
  "modular": ("modular", 17, lambda T: {"coef_frac": 0.2, "warmup_pairs": 0}, 1 / 17),
  "stack": ("stack", 6, lambda T: {"depth": max(T // 4, 2), "p_push": 0.5}, 1 / 5),
}
TEACHER_TARGET = 0.95  # The teacher (SMT) stops at this held-out accuracy ...
MEMORY_TOKENS = 8  # K: a memory of K d = 256 floats at d = 32 ...
COPY_FLOATS_PER_SYMBOL = 16  # ... and for copy at least this many floats per symbol it holds.
# At T = 64 SMT decodes this many of each sequence's 65 memories (dynamics and uniformity see
# all): an update costs much less, and the stack's teacher learned as much per update from 16
# as from all 65 (measured: docs/results.md, study 9).
DECODED_AT_64 = 16
# Tf: the teacher's decoder predicts this many future tokens from each memory. With the whole
# future (Tf = T) it finds most answers' evidence among the tokens it decodes (modular's later
# pairs give w and b away; a pop's push or a copied symbol may lie in the future itself) and
# learns the memory slowly; with 4, most decoded answers need the memory, and the teachers of
# modular, the stack and copy learned several times faster per update (measured: docs/results.md,
# study 9; keys-values not measured).
TEACHER_FUTURE = 4


def teacher_cap(T: int) -> int:
  """... or after this many SMT updates: 3000 (the copy teacher's schedule at T = 32 that reached
  the target, docs/results.md, study 9), and repro_retrieval's 2400 T / 64 where that is more."""
  return max(3000, 2400 * T // 64)


def memory_tokens(task: str, T: int, d: int) -> int:
  """K at width d: MEMORY_TOKENS, and for copy enough tokens for COPY_FLOATS_PER_SYMBOL floats per
  symbol of its T / 2-symbol string (reversed copy holds the whole string at once)."""
  if task == "copy":
    return max(MEMORY_TOKENS, COPY_FLOATS_PER_SYMBOL * (T // 2) // d)
  return MEMORY_TOKENS


def parse_args(arg: str) -> dict:
  """{"task", "T", "quick"} of get_config's argument "task=NAME,T=64,quick=1"."""
  parts = [p for p in (arg or "").split(",") if p.strip()]
  task = [p.partition("=")[2].strip() for p in parts if p.partition("=")[0].strip() == "task"]
  if task and task[-1] not in VARIANTS:
    raise ConfigError(f"config argument task={task[-1]!r} is unknown; use one of {list(VARIANTS)}.")
  rest = ",".join(p for p in parts if p.partition("=")[0].strip() != "task")
  return {"task": task[-1] if task else "copy", **parse_int_args(rest, {"T": 32, "quick": 0})}


def get_config(arg: str = ""):
  a = parse_args(arg)
  T, quick = a["T"], a["quick"]
  name, vocab, kwargs, _ = VARIANTS[a["task"]]
  c = base_config()
  c.data.name = name  # The task (VARIANTS).
  c.data.vocab_size = vocab  # V (VARIANTS).
  c.data.T = T  # Sequence length.
  c.data.kwargs = ml_collections.ConfigDict(kwargs(T))  # The variant's knobs at T.
  c.model.d_model = 32  # d.
  c.model.num_heads = 2  # Heads.
  c.model.mlp_ratio = 2  # MLP width 2d.
  c.model.mem_tokens = memory_tokens(a["task"], T, c.model.d_model)  # K.
  c.model.teacher.encoder = "stream"  # All memories of a sequence in one pass.
  c.model.teacher.Tc = T  # The full past: m_t = E(x_0..x_t).
  c.model.teacher.Tf = TEACHER_FUTURE  # Future tokens decoded from each memory.
  c.model.rnn.depth = 1  # Updater blocks.
  c.model.rnn.hidden = 128  # Width of the MLP / GRU updaters.
  c.smt.n_t = 0 if T <= 64 else 32  # Every position up to T = 64; 32 sampled ones beyond.
  c.smt.n_dec = DECODED_AT_64 if T == 64 else 0  # Memories decoded per sequence (0 = all).
  c.dmt.k = 1  # DMT from m_empty over the whole sequence regresses every rolled memory.
  c.optim.lr = 3e-3  # Peak learning rate of SMT and BPTT (DMT: DMT_STAGE).
  c.optim.warmup_steps = 20 if quick else 50  # Warmup.
  c.train.eval_every = 50 if quick else 100  # Held-out evaluation (and the teacher's stop test).
  c.log.every = 25  # Training metrics every 25 updates.
  c.log.plot = False  # No per-run curves (the study plots).
  c.ckpt.every = 50 if quick else 100  # Checkpoints.
  c.ckpt.keep = 1  # Keep only the last.
  c.eval.sections = ("read", "drift")  # Final evaluation when a study turns train.final_eval on.
  c.eval.prefix = T // 2  # The extra column: the encoder reads the first half, then the RNN.
  smt, dmt = (100, 50) if quick else (teacher_cap(T), 2000)  # SMT's cap, DMT's updates.
  c.pipeline.order = ("smt", "dmt")  # The study chooses smt,dmt or bptt.
  dmt_stage = {"optim": {"lr": budgets.dmt_lr(T)}}
  bptt = budgets.bptt_factor("tasks", T) * (smt + dmt)
  c.pipeline.stages = smt_dmt_bptt_stages(smt, dmt, bptt, dmt_stage)
  c.pipeline.stages.smt.train.stop_at_metric = "teacher_acc"  # The teacher stops at ...
  c.pipeline.stages.smt.train.stop_at_value = TEACHER_TARGET  # ... this accuracy, or its cap.
  # BPTT stops at a perfect validation read of the answers the past determines (modular's first
  # answers are guesses), which no further update can raise.
  c.pipeline.stages.bptt.train.stop_at_metric = "rnn_acc_sure"
  c.pipeline.stages.bptt.train.stop_at_value = 1.0
  return c
