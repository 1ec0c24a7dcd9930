"""The configuration schema: every field, its default and its meaning, plus up-front validation.

Experiment configs (experiments/configs/*.py) start from `base_config()` and override fields.
Field names follow the paper's symbols: T (sequence length), Tc (encoder context), Tf (decoder
future), Td (DMT rollout length), k (DMT supervision stride), K = mem_tokens, Z = mem_size.
"""

import ml_collections

METHODS = ("smt", "dmt", "bptt")
DTYPES = ("float32", "bfloat16", "float64")
SCHEDULES = ("warmup_constant", "warmup_cosine")


def base_config() -> ml_collections.ConfigDict:
  """A small, CPU-sized configuration with the paper's loss coefficients."""
  c = ml_collections.ConfigDict()
  c.method = "smt"  # Objective trained by this run: smt | dmt | bptt.
  c.seed = 0  # Seeds parameters and data; data is a pure function of (seed, step).

  c.data = ml_collections.ConfigDict()
  c.data.name = "retrieval"  # Task or token-stream name (smt_jax.data.TASK_NAMES).
  c.data.vocab_size = 16  # V; streams of bytes or pixels use 256.
  c.data.T = 64  # Training sequence length.
  c.data.path = ""  # Folder with prepared train/test .npy files (token streams only).
  c.data.kwargs = ml_collections.ConfigDict()  # Task-specific knobs (see the task's docstring).

  c.model = ml_collections.ConfigDict()
  c.model.d_model = 64  # Width d of every Transformer (paper: 256).
  c.model.num_heads = 4  # Attention heads (paper: 8).
  c.model.mlp_ratio = 4  # MLP width as a multiple of d_model.
  c.model.mem_tokens = 4  # K memory tokens (paper: 16).
  c.model.mem_size = 256  # Z = K * d, the flattened memory size (paper: 4096).
  c.model.fsq_levels = 0  # > 1: finite scalar quantisation of memory features; 0: off.
  c.model.dtype = "float32"  # Compute dtype (float32 | bfloat16 | float64); params stay float32.

  c.model.teacher = ml_collections.ConfigDict()
  c.model.teacher.encoder_depth = 2  # Encoder blocks (paper: 8).
  c.model.teacher.decoder_depth = 1  # Decoder blocks (paper: 4).
  c.model.teacher.Tc = 32  # Encoder context window (paper: 256).
  c.model.teacher.Tf = 8  # Future targets predicted by the decoder (paper: 64).

  c.model.rnn = ml_collections.ConfigDict()
  c.model.rnn.updater = "transformer"  # transformer | mlp | gru | lstm | elman.
  c.model.rnn.depth = 2  # Blocks of the transformer-token / MLP updater (paper: 8).
  c.model.rnn.hidden = 256  # Input-embedding and MLP width of the non-transformer updaters.
  c.model.rnn.learned_init = False  # Learn the initial memory instead of zeros.
  c.model.rnn.readout_depth = 1  # Readout blocks (paper: 4).
  c.model.rnn.readout_from_decoder = True  # DMT/BPTT from an SMT checkpoint copy the decoder
  #                                          into the readout (needs readout_depth == decoder_depth).

  c.smt = ml_collections.ConfigDict()
  c.smt.n_t = 0  # Timesteps per sequence trained at once; 0 = all T (each window encoded once).
  c.smt.coef_dec = 1.0  # c_dec, weight of the decoder cross-entropy.
  c.smt.coef_dyn = 0.1  # c_dyn, weight of the one-step dynamics MSE.
  c.smt.coef_unif = 0.001  # c_unif, weight of the uniformity loss on memory tokens.
  c.smt.detach_labels = False  # Stop the gradient through the dynamics targets m_{t+1}.
  c.smt.unif_tokens = 1024  # Max memory tokens in the uniformity loss (random subset above).
  c.smt.remat_encoder = False  # Recompute encoder activations in the backward pass: peak memory
  #                              no longer grows as B * T * Tc * depth, at ~1/3 more compute.

  c.dmt = ml_collections.ConfigDict()
  c.dmt.Td = 32  # Rollout length of the updater on its own memories.
  c.dmt.k = 4  # Regress every k-th rolled memory onto the encoder's memory.
  c.dmt.start = -1  # Rollout start position; -1 = uniform per sequence in [0, T - 1 - Td].
  #                   Rollouts must reach what the task needs: if they never hold it (e.g. start
  #                   before a needle), the readout term learns to ignore the memory.
  c.dmt.coef_dyn = 1.0  # Weight of the rollout MSE.
  c.dmt.coef_readout = 1.0  # Weight of the readout cross-entropy on rolled memories.
  c.dmt.backprop_through_rollout = False  # False: stop-gradient on the memory before each update.
  c.dmt.readout_grad_to_updater = False  # Let the readout loss train the updater too.
  c.dmt.detach_targets = True  # Encoder memories are fixed DAgger labels (no encoder gradient).

  c.bptt = ml_collections.ConfigDict()
  c.bptt.remat = True  # jax.checkpoint each scanned step: recompute instead of storing. Less
  #                      memory, and on CPU faster too (docs/benchmarks.md: 1.5-2.2x at T 64).

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-3  # Peak learning rate of AdamW.
  c.optim.schedule = "warmup_cosine"  # warmup_constant | warmup_cosine.
  c.optim.warmup_steps = 100  # Linear warmup from 0 to optim.lr.
  c.optim.final_lr_frac = 0.1  # warmup_cosine decays to lr * final_lr_frac at train.num_steps.
  c.optim.b1 = 0.9  # Adam beta_1.
  c.optim.b2 = 0.98  # Adam beta_2.
  c.optim.eps = 1e-8  # Adam epsilon.
  c.optim.weight_decay = 0.01  # Decoupled weight decay, on matrices only (ndim >= 2).
  c.optim.clip_norm = 1.0  # Clip gradients to this global norm; 0 = no clipping.

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 1000  # Optimizer updates.
  c.train.batch_size = 32  # Global batch size B (sequences per update, over all devices).
  c.train.grad_accum = 1  # Micro-batches per update (B / grad_accum sequences at a time).
  c.train.trainable = ""  # Comma-separated groups (encoder,decoder,updater,readout); "" = by
  #                         method: smt -> encoder,decoder,updater; dmt, bptt -> updater,readout.
  c.train.eval_every = 200  # Evaluate on held-out data every this many steps (and at the end).
  c.train.eval_batch_size = 64  # Held-out sequences per evaluation batch.
  c.train.eval_batches = 2  # Held-out batches per evaluation (the same batches every time).
  c.train.final_eval = True  # At the end, run smt_jax.eval.evaluate (the `eval` group): eval.json
  #                            and PNGs in the workdir.
  c.train.eval_prefix = -1  # RNN read start: 0 = initial memory, p >= 1 = encoder memory of the
  #                           window ending at p - 1; -1 = by method (smt, dmt: 1; bptt: 0).

  c.ckpt = ml_collections.ConfigDict()
  c.ckpt.every = 500  # Save a checkpoint every this many steps (and at the end).
  c.ckpt.keep = 3  # Checkpoints kept in workdir/checkpoints.
  c.ckpt.init_from = ""  # A workdir or checkpoints folder to take the parameters from when the
  #                        workdir has no checkpoint (DMT/BPTT from SMT); "" = from scratch.

  c.log = ml_collections.ConfigDict()
  c.log.every = 50  # Append mean training metrics to workdir/metrics.jsonl every this many steps.
  c.log.progress = True  # tqdm progress bar on stderr (only when stderr is a terminal).
  c.log.plot = True  # Write workdir/curves.png from metrics.jsonl at the end.

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # Devices on the data-parallel axis; -1 = all devices / mesh.fsdp.
  c.mesh.fsdp = 1  # Devices each matrix parameter is split over (FSDP); the batch is split over
  #                  data * fsdp devices. 1 = parameters replicated (plain data parallelism).

  from smt_jax.eval.config import default_eval_config  # Local: eval.config imports ConfigError.

  c.eval = default_eval_config()  # Final evaluation: read, drift, length generalisation, samples.

  c.pipeline = ml_collections.ConfigDict()
  c.pipeline.order = ""  # Comma-separated stages run one after another into workdir/STAGE;
  #                        "" = a single run of this config in workdir.
  c.pipeline.stages = ml_collections.ConfigDict()  # STAGE -> overrides of the fields above; a
  #                        stage's ckpt.init_from may name an earlier stage.
  return c


def parse_int_args(arg: str, defaults: dict) -> dict:
  """The integer arguments of a config file's get_config(arg) (`--config=FILE:ARG`):
  parse_int_args("T=64,quick=1", {"T": 32, "quick": 0}) -> {"T": 64, "quick": 1}. A key not in
  defaults, or a value that is not an integer, raises ConfigError naming it."""
  out = dict(defaults)
  for part in filter(None, (arg or "").split(",")):
    key, _, value = (x.strip() for x in part.partition("="))
    if key not in defaults:
      raise ConfigError(f"config argument {key!r} is unknown; use {sorted(defaults)}.")
    try:
      out[key] = int(value)
    except ValueError:
      raise ConfigError(f"config argument {key}={value!r} is not an integer.") from None
  return out


def smt_dmt_bptt_stages(smt_steps: int, dmt_steps: int, bptt_steps: int,
                        read_prefix: int = -1) -> ml_collections.ConfigDict:
  """`pipeline.stages` of the standard comparison: SMT; DMT from the SMT stage's parameters;
  BPTT of the same RNN from scratch. read_prefix sets train.eval_prefix of the SMT and DMT
  stages (where their RNN read starts; -1 = by method); BPTT reads from its initial memory."""
  read = {} if read_prefix == -1 else {"eval_prefix": read_prefix}
  return ml_collections.ConfigDict({
      "smt": {"method": "smt", "train": {"num_steps": smt_steps, **read}},
      "dmt": {"method": "dmt", "train": {"num_steps": dmt_steps, **read},
              "ckpt": {"init_from": "smt"}},
      "bptt": {"method": "bptt", "train": {"num_steps": bptt_steps}},
  })


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field and the fix."""


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def validate_model(cfg: ml_collections.ConfigDict) -> None:
  """Checks the fields the models and objectives read; raises ConfigError naming the field."""
  from smt_jax.models.updaters import UPDATER_NAMES  # Local: keeps `import config` light.

  m, t, r = cfg.model, cfg.model.teacher, cfg.model.rnn
  _require(cfg.method in METHODS,
           f"method={cfg.method!r} is unknown; use one of {METHODS}.")
  _require(m.dtype in DTYPES, f"model.dtype={m.dtype!r} is unknown; use one of {DTYPES}.")
  _require(m.d_model % m.num_heads == 0,
           f"model.d_model={m.d_model} must be divisible by model.num_heads={m.num_heads}.")
  _require((m.d_model // m.num_heads) % 2 == 0,
           f"model.d_model / model.num_heads = {m.d_model // m.num_heads} must be even (rotary "
           "positions rotate feature pairs).")
  _require(m.mem_size == m.mem_tokens * m.d_model,
           f"model.mem_size={m.mem_size} must equal model.mem_tokens * model.d_model = "
           f"{m.mem_tokens} * {m.d_model} = {m.mem_tokens * m.d_model}.")
  _require(r.updater in UPDATER_NAMES,
           f"model.rnn.updater={r.updater!r} is unknown; use one of {UPDATER_NAMES}.")
  _require(r.updater != "lstm" or m.mem_size % 2 == 0,
           f"model.mem_size={m.mem_size} must be even for the LSTM updater (it holds h and c).")
  _require(cfg.data.vocab_size >= 2, f"data.vocab_size={cfg.data.vocab_size} must be >= 2.")
  _require(t.Tc >= 1, f"model.teacher.Tc={t.Tc} must be >= 1.")
  _require(t.Tf >= 1, f"model.teacher.Tf={t.Tf} must be >= 1.")
  _require(t.Tc + t.Tf <= cfg.data.T,
           f"model.teacher.Tc + model.teacher.Tf = {t.Tc} + {t.Tf} is longer than data.T = "
           f"{cfg.data.T}; shorten Tc or Tf, or lengthen data.T.")
  _require(0 <= cfg.smt.n_t <= cfg.data.T - 1,
           f"smt.n_t={cfg.smt.n_t} must be in [0, data.T - 1] (0 trains every timestep).")
  d = cfg.dmt
  _require(1 <= d.Td <= cfg.data.T - 1,
           f"dmt.Td={d.Td} must be in [1, data.T - 1 = {cfg.data.T - 1}].")
  _require(1 <= d.k <= d.Td, f"dmt.k={d.k} must be in [1, dmt.Td = {d.Td}].")
  _require(d.start == -1 or 0 <= d.start <= cfg.data.T - 1 - d.Td,
           f"dmt.start={d.start} must be -1 (random) or in [0, data.T - 1 - dmt.Td = "
           f"{cfg.data.T - 1 - d.Td}].")
  _require(not r.readout_from_decoder or r.readout_depth == t.decoder_depth,
           f"model.rnn.readout_from_decoder copies the decoder into the readout, so "
           f"model.rnn.readout_depth={r.readout_depth} must equal model.teacher.decoder_depth="
           f"{t.decoder_depth}; or set model.rnn.readout_from_decoder=False.")


def validate(cfg: ml_collections.ConfigDict, *, init_from_pending: bool = False) -> None:
  """Checks a whole run config before anything compiles; raises ConfigError naming the field.

  `init_from_pending`: ckpt.init_from is produced by an earlier pipeline stage, so it need not
  exist yet.
  """
  import jax  # Local: keeps `import config` light.

  from smt_jax.data import TASK_NAMES, make_dataset
  from smt_jax.models import GROUPS
  from smt_jax.parallel import mesh_shape
  from smt_jax.train.checkpointing import checkpoint_dir

  _require(cfg.data.name in TASK_NAMES,
           f"data.name={cfg.data.name!r} is unknown; use one of {TASK_NAMES}.")
  validate_model(cfg)
  try:
    dataset = make_dataset(cfg.data, split="train")
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(str(e)) from e
  _require(dataset.vocab_size == cfg.data.vocab_size,
           f"data.vocab_size={cfg.data.vocab_size} differs from the {cfg.data.name!r} dataset's "
           f"vocabulary ({dataset.vocab_size}); set data.vocab_size={dataset.vocab_size}.")

  o, tr, ck, lg = cfg.optim, cfg.train, cfg.ckpt, cfg.log
  _require(o.schedule in SCHEDULES,
           f"optim.schedule={o.schedule!r} is unknown; use one of {SCHEDULES}.")
  _require(o.lr > 0, f"optim.lr={o.lr} must be > 0.")
  _require(o.warmup_steps >= 0, f"optim.warmup_steps={o.warmup_steps} must be >= 0.")
  _require(0 <= o.final_lr_frac <= 1, f"optim.final_lr_frac={o.final_lr_frac} must be in [0, 1].")
  _require(o.clip_norm >= 0, f"optim.clip_norm={o.clip_norm} must be >= 0 (0 = no clipping).")
  trainable = [g.strip() for g in tr.trainable.split(",") if g.strip()]
  unknown = [g for g in trainable if g not in GROUPS]
  _require(not unknown, f"train.trainable={tr.trainable!r} names unknown groups {unknown}; use "
           f"a comma-separated subset of {GROUPS} (or \"\" for the method's default).")
  _require(tr.num_steps >= 1, f"train.num_steps={tr.num_steps} must be >= 1.")
  _require(tr.grad_accum >= 1 and tr.batch_size % tr.grad_accum == 0,
           f"train.batch_size={tr.batch_size} must be divisible by train.grad_accum="
           f"{tr.grad_accum} (>= 1).")

  devices = jax.device_count()
  try:
    data, fsdp = mesh_shape(cfg.mesh.data, cfg.mesh.fsdp, devices)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  _require(jax.process_count() == 1 or data * fsdp == devices,
           f"mesh.data * mesh.fsdp = {data} * {fsdp} must use all {devices} devices of a "
           f"{jax.process_count()}-process run (mesh.data=-1 does).")
  micro, split = tr.batch_size // tr.grad_accum, data * fsdp
  axes = "mesh.data" + (" * mesh.fsdp" if fsdp > 1 else "")
  for field, size in ((f"train.batch_size={tr.batch_size}" + (
      f" / train.grad_accum={tr.grad_accum} = {micro}" if tr.grad_accum > 1 else ""), micro),
                      (f"train.eval_batch_size={tr.eval_batch_size}", tr.eval_batch_size)):
    _require(size % split == 0,
             f"{field} is not divisible by the {split} devices of {axes}; use a "
             f"multiple of {split}.")
  _require(min(tr.eval_every, tr.eval_batches, tr.eval_batch_size) >= 1,
           "train.eval_every, train.eval_batches and train.eval_batch_size must be >= 1.")
  _require(-1 <= tr.eval_prefix <= cfg.data.T - 1,
           f"train.eval_prefix={tr.eval_prefix} must be -1 (by method), 0 or in [1, data.T - 1].")
  _require(lg.every >= 1, f"log.every={lg.every} must be >= 1.")
  _require(ck.keep >= 1, f"ckpt.keep={ck.keep} must be >= 1.")
  _require(ck.every >= 1 and ck.every % lg.every == 0,
           f"ckpt.every={ck.every} must be a positive multiple of log.every={lg.every} (a resumed "
           "run then logs the same training averages).")
  _require(not ck.init_from or init_from_pending or checkpoint_dir(ck.init_from) is not None,
           f"ckpt.init_from={ck.init_from!r} holds no checkpoint; point it at the workdir of a "
           "finished run (e.g. an SMT run), or set it to \"\" to start from scratch.")
