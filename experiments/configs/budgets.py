"""The one home of the comparisons' budget rules: how many updates BPTT gets beside SMT -> DMT,
and how DMT's optimiser depends on the sequence length T. Every config and study asks here.

BPTT. A comparison gives BPTT of an updater `bptt_factor(...)` times the updates of the SMT and
DMT stages it is compared with (every SMT stage of a curriculum included), so that BPTT has at
least SMT -> DMT's wall-clock at the updates per second each stage runs at alone on idle cores
(experiments/bench/rates.py measures them into experiments/bench/results/rates_cpu.json;
docs/results.md gives each comparison's rates and the share of wall-clock they give BPTT). An
SMT update costs more than a BPTT update, and its cost grows faster with T, so the factor grows
with T. A config's factor is sized from the transformer-token updater (the configs' default);
where an updater's BPTT runs faster and the config's factor leaves it short of SMT -> DMT's
wall-clock, a study gives it its own (UPDATER_FACTORS; a config does not know which updater a
study sets). Fine-tuning by BPTT (stage "finetune") gets half the config's BPTT updates.

DMT. With gradients through the whole rollout, DMT's peak lr drops from T = LONG_ROLLOUT on:
over rollouts that long the shorter sequences' lr diverged or stalled (docs/results.md, study 1).
"""

# The configs' BPTT updates per SMT or DMT update: comparison -> ((largest T, factor), ...,
# (None, factor for any longer T)).
CONFIG_FACTORS = {
  "retrieval": ((32, 4), (None, 14)),  # experiments/configs/repro_retrieval.py
  "curriculum": ((None, 6),),  # experiments/configs/curriculum.py
  "stack": ((None, 8),),  # experiments/configs/repro_stack.py
  "tasks": ((None, 8),),  # experiments/configs/tasks.py (study 9; rates measured at T = 64, 128)
}
# The default pipeline (experiments/configs/default.py, T = 32, SMT 400 + DMT 1000 updates):
# BPTT's updates, chosen by hand above SMT -> DMT's wall-clock on idle cores.
DEFAULT_BPTT_UPDATES = 9000
# (comparison, updater, T) -> BPTT updates per SMT or DMT update of a study's BPTT run, where
# idle rates measured after the config's factor was set showed that factor short of
# SMT -> DMT's wall-clock for that updater.
UPDATER_FACTORS = {
  ("curriculum", "transformer", 128): 8,
  ("retrieval", "mlp", 32): 8,
  ("retrieval", "mlp", 64): 22,
  ("curriculum", "mlp", 128): 13,
  ("curriculum", "mlp", 256): 8,
  ("curriculum", "gru", 128): 7,
  ("curriculum", "gru", 256): 7,
  ("tasks", "transformer", 64): 9,
  ("tasks", "mlp", 64): 13,
  ("tasks", "gru", 64): 9,
  ("tasks", "transformer", 128): 9,
  ("tasks", "mlp", 128): 13,
  ("tasks", "gru", 128): 9,
}

DMT_LR = 3e-3  # DMT's peak lr below T = LONG_ROLLOUT.
DMT_LR_LONG = 1e-3  # DMT's peak lr from T = LONG_ROLLOUT on.
LONG_ROLLOUT = 128


def bptt_factor(comparison: str, T: int, updater: str | None = None) -> int:
  """BPTT updates per SMT or DMT update in `comparison` (a CONFIG_FACTORS key) at sequence
  length T: `updater`'s own factor where UPDATER_FACTORS has one, else the config's."""
  if comparison not in CONFIG_FACTORS:
    raise KeyError(f"no BPTT budget for comparison {comparison!r}; use {sorted(CONFIG_FACTORS)}")
  own = UPDATER_FACTORS.get((comparison, updater, T))
  if own is not None:
    return own
  return next(f for longest, f in CONFIG_FACTORS[comparison] if longest is None or T <= longest)


def dmt_lr(T: int) -> float:
  """DMT's peak learning rate at sequence length T (its rollouts cover the whole sequence)."""
  return DMT_LR_LONG if T >= LONG_ROLLOUT else DMT_LR
