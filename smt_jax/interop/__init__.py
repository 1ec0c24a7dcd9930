"""Interoperation with the PyTorch original (github.com/akarshkumar0101/smt, x-transformers).

`original_options(cfg)` switches a config to the original's architecture and objectives;
`smt_jax.interop.mapping` maps its Teacher / RNN state_dicts onto smt_jax's parameter tree;
`python -m smt_jax.interop.import_original CKPT --out WORKDIR` turns one of its checkpoints into
an smt_jax workdir (config.json + orbax checkpoint).
"""

import ml_collections

# x-transformers' defaults, which the original does not change.
ORIGINAL_HEAD_DIM = 64
ORIGINAL_ROTARY_FRACTION = 0.5  # rotary_emb_dim = dim_head // 2


def original_options(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """cfg with every option that the PyTorch original's models, losses and training step need
  for an exact match (in place; returned for chaining). Sizes (d, K, depths, Tc, Tf, ...) are
  left as they are; set data.T = Tc + Tf for SMT and Tc + Td + Tf for DMT, as the original."""
  m, t = cfg.model, cfg.model.teacher
  m.head_dim = ORIGINAL_HEAD_DIM
  m.rotary_fraction = ORIGINAL_ROTARY_FRACTION
  m.exact_gelu = True
  m.norm_eps = 0.0
  m.mlp_ratio = 4
  m.fsq_levels = 0
  t.shared_embed = True
  t.register_std = 1.0
  cfg.model.rnn.updater = "transformer"
  cfg.model.rnn.learned_init = False
  cfg.smt.n_t = 1
  cfg.smt.timestep = t.Tc - 1
  cfg.smt.unif_tokens = 512
  cfg.smt.detach_labels = False
  cfg.smt.coef_dec, cfg.smt.coef_dyn, cfg.smt.coef_unif = 1.0, 0.1, 0.001
  d = cfg.dmt
  d.start = t.Tc - 1  # Rollouts from the memory of x[0..Tc-1] (not m_empty, not random).
  d.random_start = False
  d.include_start = True
  d.coef_dec, d.coef_dyn, d.coef_unif, d.coef_readout = 1.0, 10.0, 0.01, 1.0
  d.grad_steps = 0  # Through the whole rollout: the original's default (its detach_rnn=True).
  # The original detaches the readout's input (detach_readout) and keeps the teacher frozen, as
  # smt_jax's DMT always does.
  o = cfg.optim
  o.clip_per_model = True
  o.decay_all = True
  o.clip_norm = 1.0
  o.b1, o.b2, o.eps, o.weight_decay = 0.9, 0.95, 1e-8, 1e-2
  o.schedule = "warmup_constant"
  o.lr = 3e-4
  o.warmup_steps = cfg.train.num_steps // 100  # util.get_lr: 1 % of the iterations.
  return cfg


__all__ = ["original_options", "ORIGINAL_HEAD_DIM", "ORIGINAL_ROTARY_FRACTION"]
