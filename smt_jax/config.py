"""The configuration schema: every field, its default and its meaning.

The ground floor of the package: it imports nothing of smt_jax. Experiment configs
(experiments/configs/*.py) start from `base_config()` and set only what differs. Field names
follow the paper's symbols: T (sequence length), Tc (encoder context), Tf (decoder future), Td
(DMT rollout length), k (DMT supervision stride), K = mem_tokens; the memory size Z = K * d is
derived (`smt_jax.models.mem_size`). Values are checked before anything compiles by
`smt_jax.train.validate.validate`.
"""

import json

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """A small, CPU-sized configuration with the paper's loss coefficients."""
  c = ml_collections.ConfigDict()
  c.method = "smt"  # Objective trained by this run: smt | dmt | bptt | lm (the decoder alone as
  #                  a causal Transformer LM, the baseline; depth model.teacher.decoder_depth).
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
  c.model.fsq_levels = 0  # > 1: finite scalar quantisation of memory features; 0: off.
  c.model.dtype = "float32"  # Compute dtype (float32 | bfloat16 | float64); params stay float32.
  # Options that reproduce the PyTorch original's architecture (smt_jax.interop); defaults = ours.
  c.model.head_dim = 0  # Attention head width; 0 = d_model / num_heads (original: 64).
  c.model.rotary_fraction = 1.0  # Leading fraction of each head that RoPE rotates (original: 0.5).
  c.model.exact_gelu = False  # erf GELU in the MLPs; False = tanh approximation (original: True).
  c.model.norm_eps = 1e-6  # RMSNorm epsilon in the blocks; 0 = x * sqrt(d) / max(|x|, 1e-12), as
  #                         x-transformers (original: 0). Memories are normalised with 1e-6 always.

  c.model.teacher = ml_collections.ConfigDict()
  c.model.teacher.encoder_depth = 2  # Encoder blocks (paper: 8).
  c.model.teacher.decoder_depth = 1  # Decoder blocks (paper: 4).
  c.model.teacher.Tc = 32  # Encoder context window, 1..T (paper: 256; Tc = T: the full past,
  #                           m_t = E(x_0..x_t)). Windows are left-padded before x[0].
  c.model.teacher.Tf = 8  # Future targets predicted by the decoder, 1..T (paper: 64); targets
  #                         past the end of the sequence are masked.
  c.model.teacher.shared_embed = False  # The decoder uses the encoder's token embedding (params
  #                                       encoder/embed) and owns none; the readout then has none.
  c.model.teacher.register_std = 0.02  # Std of the encoder registers' init (original: 1.0).
  c.model.teacher.encoder = "window"  # window: each position's last Tc tokens encoded
  #                    separately (bidirectional within the window). stream: one pass over the
  #                    sequence, a causal (Tc-sliding-window) token trunk read by K registers per
  #                    position (position -1: registers that read no token); same parameters and
  #                    block options, a different inductive bias (smt_jax/models/stream.py).
  c.model.teacher.stream_chunk = 0  # Stream encoder: positions per attention block (attention
  #                    memory ~ B * T * (1 + K) * (Tc + chunk)); 0 = Tc.
  c.model.teacher.buckets = 1  # Window encoder: encode the windows of all positions in this
  #                    many length classes (Tc, Tc/2, Tc/4, ..., the short windows near the start
  #                    without their padding); exact, less compute. 1 = off.
  c.model.teacher.remat_blocks = False  # Recompute each encoder block in the backward pass
  #                    (stores block inputs only); either encoder.

  c.model.rnn = ml_collections.ConfigDict()
  c.model.rnn.updater = "transformer"  # transformer | mlp | gru | lstm | elman.
  c.model.rnn.depth = 2  # Blocks of the transformer-token / MLP updater (paper: 8).
  c.model.rnn.hidden = 256  # Input-embedding and MLP width of the non-transformer updaters.
  c.model.rnn.learned_init = False  # Learn the updater's initial memory instead of zeros: where
  #                                   BPTT starts. SMT and DMT RNNs start from m_empty, the
  #                                   encoder's memory of the empty past.
  c.model.rnn.readout_depth = 1  # Readout blocks (paper: 4).
  c.model.rnn.readout_from_decoder = True  # DMT/BPTT from an SMT checkpoint copy the decoder
  #                    into the readout (needs readout_depth == decoder_depth).

  c.smt = ml_collections.ConfigDict()
  c.smt.n_t = 0  # Memory positions per sequence trained at once, sampled from -1..T-2 (-1 =
  #                m_empty: its transition f(m_empty, x_0) ~ m_0 is trained like every other);
  #                0 = every position -1..T-1 (each window encoded once).
  c.smt.n_dec = 0  # With n_t = 0: decode only this many memories per sequence (a random subset
  #                  of positions -1..T-1; the dynamics and uniformity terms still cover all);
  #                  0 = decode all.
  c.smt.coef_dec = 1.0  # c_dec, weight of the decoder cross-entropy.
  c.smt.coef_dyn = 0.1  # c_dyn, weight of the one-step dynamics MSE.
  c.smt.coef_unif = 0.001  # c_unif, weight of the uniformity loss on memory tokens.
  c.smt.detach_labels = False  # Stop the gradient through the dynamics targets m_{t+1}.
  c.smt.unif_tokens = 1024  # Max memory tokens in the uniformity loss (random subset above).
  c.smt.timestep = -1  # >= 0: train only the memory at this position of each sequence, uniformity
  #                      over it alone (the original's forward_smt: Tc - 1 with data.T = Tc + Tf);
  #                      -1: off, n_t decides.
  c.smt.remat_encoder = False  # Recompute encoder activations in the backward pass: peak memory
  #                              no longer grows as B * T * Tc * depth, at ~1/3 more compute.

  c.dmt = ml_collections.ConfigDict()
  c.dmt.Td = 0  # Rollout length of the updater on its own memories; 0 = to the end of the
  #               sequence (T - 1 - dmt.start; from m_empty: all T tokens).
  c.dmt.k = 4  # Regress every k-th rolled memory onto the encoder's memory.
  c.dmt.start = -1  # The memory the rollout starts from: -1 = m_empty, so the rollout reads every
  #                   token from x[0] as the RNN is read (the standard); s >= 0 = the encoder's
  #                   memory of x[..s]. Rollouts that start before the information a label needs
  #                   teach a trainable readout to ignore the memory, so from m_empty (and with
  #                   random starts) DMT trains only the updater by default (train.trainable).
  c.dmt.random_start = False  # True: a start per sequence, uniform in [-1, T - 1 - Td] (dmt.start
  #                             is then ignored; needs Td >= 1).
  c.dmt.coef_dyn = 1.0  # Weight of the rollout MSE.
  c.dmt.coef_readout = 1.0  # Weight of the readout cross-entropy on rolled memories.
  c.dmt.grad_steps = 0  # Updates a gradient runs back through the rollout: 0 = all of them;
  #                     g >= 1 = block truncation, a stop-gradient on the memory entering updates
  #                     1, g + 1, 2g + 1, .. (each target's path is 1 .. g updates; the cost stays
  #                     one rollout, where a sliding window of g costs g); 1 = before every update.
  #                     From m_empty with 1 DMT does not learn to store (docs/results.md).
  c.dmt.remat = False  # jax.checkpoint each rollout step: recompute instead of storing (with
  #                     grad_steps != 1; with 1 the rollout keeps no activations).
  c.dmt.include_start = False  # Readout and MSE over rollout steps 0..Td-1 (step 0 = the start's
  #                              encoder memory), as the original; False: steps 1..Td.
  c.dmt.coef_dec = 0.0  # Weight of the decoder CE on the target memories (original: 1).
  c.dmt.coef_unif = 0.0  # Weight of the target memories' whole-vector uniformity (original: 0.01).
  c.dmt.solver = "scan"  # How the rollout is solved: scan | deer | quasi_deer (see c.newton).

  c.bptt = ml_collections.ConfigDict()
  c.bptt.remat = True  # jax.checkpoint each scanned step: recompute instead of storing. Less
  #                      memory, and on CPU faster too (docs/benchmarks.md).
  c.bptt.start = "init"  # Memory before x[0]: init = the updater's initial memory (zeros, the
  #                        paper's); empty = m_empty of a trained encoder (ckpt.init_from an SMT /
  #                        DMT run: BPTT fine-tuning of the SMT -> DMT RNN, read from m_empty).
  c.bptt.solver = "scan"  # How the rollout is solved: scan | deer | quasi_deer (see c.newton).

  c.newton = ml_collections.ConfigDict()  # Parallel-in-time rollouts (dmt / bptt / eval.solver
  #   deer or quasi_deer, smt_jax.objectives.solvers): Newton iterations, each a linear recurrence
  #   solved by an associative scan; the metrics report solver_iters and solver_converged.
  c.newton.max_iters = 64  # Cap on Newton iterations (T always suffices: the sweep property).
  c.newton.tol = 1e-4  # Converged when max_t |m_t - f(m_{t-1}, x_t)| <= tol (memory units).
  c.newton.damping = 0.0  # >= 0: Jacobians scaled by 1 / (1 + damping) (stabilises chaotic runs).
  c.newton.chunk = 0  # Jacobian columns computed at once (bounds memory); 0 = all Z.
  c.newton.fallback = False  # Not converged: use the lax.scan rollout instead (solver_fell_back).

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
  c.optim.decay_all = False  # Decay every parameter (norm gains towards 1), as torch's AdamW in
  #                            the original; False: matrices only.
  c.optim.clip_per_model = False  # Clip the teacher's (encoder, decoder) and the RNN's (updater,
  #                                 readout) gradients to clip_norm separately, as the original.

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 1000  # Optimizer updates.
  c.train.batch_size = 32  # Global batch size B (sequences per update, over all devices).
  c.train.grad_accum = 1  # Micro-batches per update (B / grad_accum sequences at a time).
  c.train.trainable = ()  # Groups trained (of encoder, decoder, updater, readout); () = by
  #                         method (smt_jax.objectives.methods.trainable_groups).
  c.train.eval_every = 200  # Evaluate on the validation split (data split "val", batches keyed
  #                            by the run's Keys.eval_data) every this many steps (and at the
  #                            end); its rows ("eval" in metrics.jsonl) guide choices, not reports.
  c.train.eval_batch_size = 64  # Validation sequences per evaluation batch.
  c.train.eval_batches = 2  # Validation batches per evaluation (the same batches every time).
  c.train.stop_at_metric = ""  # Stop early at the first evaluation whose metric ("teacher_acc",
  #                               "rnn_acc", or on a synthetic task "teacher_acc_sure" /
  #                               "rnn_acc_sure": over the answers the past determines) reaches
  #                               train.stop_at_value; num_steps is the cap. "" = num_steps.
  c.train.stop_at_value = 1.0  # The accuracy train.stop_at_metric stops at.
  c.train.final_eval = True  # At the end, run smt_jax.eval.evaluate (the `eval` group): eval.json
  #                            and PNGs in the workdir.

  c.ckpt = ml_collections.ConfigDict()
  c.ckpt.every = 500  # Save a checkpoint every this many steps (and at the end).
  c.ckpt.keep = 3  # Checkpoints kept in workdir/checkpoints.
  c.ckpt.init_from = ""  # A workdir or checkpoints folder to take the parameters from when the
  #                        workdir has no checkpoint (DMT/BPTT from SMT); "" = from scratch.
  c.ckpt.init_groups = ()  # The parameter groups ckpt.init_from gives; the others start fresh
  #                          (e.g. a new updater beside a trained teacher). () = every group.
  c.ckpt.keep_best = ""  # A validation metric ("rnn_loss", "rnn_acc", "teacher_loss" or
  #                        "teacher_acc"): workdir/best keeps the parameters of the evaluation
  #                        with its best value (lowest loss, highest accuracy), and the final
  #                        evaluation reads them too, into workdir/best/eval.json (early stopping
  #                        without shortening the budget). "" = off.

  c.log = ml_collections.ConfigDict()
  c.log.every = 50  # Append mean training metrics to workdir/metrics.jsonl every this many steps.
  c.log.progress = True  # tqdm progress bar on stderr (only when stderr is a terminal).
  c.log.progress_every_s = 60.0  # When stderr is not a terminal (a cluster's log): a line
  #                                 every this many seconds (step, updates/s, loss, ETA); 0 = off.
  c.log.plot = True  # Write workdir/curves.png from metrics.jsonl at the end.
  c.log.tensorboard = False  # Also write TensorBoard event files into the workdir (the same
  #                            scalars, and the PNGs as images); needs the tensorboardX package.

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # Devices on the data-parallel axis; -1 = all devices / mesh.fsdp.
  c.mesh.fsdp = 1  # Devices each matrix parameter is split over (FSDP); the batch is split over
  #                  data * fsdp devices. 1 = parameters replicated (plain data parallelism).

  c.eval = ml_collections.ConfigDict()  # The final evaluation (smt_jax.eval.evaluate); 0, -1
  #                                       and () mean "derive from the run's config".
  c.eval.prefix = -1  # P of the extra read beside the main one (which always starts at x[0]):
  #                     the encoder reads x[0..P-1], then the RNN reads x[P..] (methods with a
  #                     teacher); also the prompt of the encoder-prompted samples. -1 = Tc (T // 2
  #                     when Tc >= T).
  c.eval.sections = ()  # Parts of the final evaluation (read, drift, length, write, lags,
  #                       carry); () = all but carry, drift only for methods with a teacher and
  #                       lags (accuracy by how far back each answer's token entered) only for an
  #                       RNN on a task whose answers repeat one input token (copy, stack,
  #                       keys_values). carry (named only: the readout after k updates from the
  #                       encoder's memory, k = 0, 1, 2, 4 .. T) needs a method with a teacher.
  c.eval.seed = 0  # Seeds the test batches (data "test", from smt_jax.eval.config.final_eval_key, a
  #                  key no training or validation batch uses) and the samples.
  c.eval.batch_size = 64  # Test sequences per evaluation batch.
  c.eval.num_batches = 16  # Batches averaged by read, drift and length generalisation: 1024
  #                          test sequences, a 95 % interval of +-0.031 at most.
  c.eval.T = 0  # Length of the read sequences; 0 = data.T.
  c.eval.chunk = 256  # Positions the teacher re-encodes at once (bounds memory on long
  #                     sequences); 0 = all.
  c.eval.drift_steps = 0  # RNN updates from m_empty (the memory before x[0]); 0 = data.T.
  c.eval.lengths = ()  # Sequence lengths of length generalisation; () = (T, 2T, 4T), T = data.T.
  c.eval.num_samples = 8  # Sequences written by the RNN per start (encoder prefix, scratch).
  c.eval.write_length = 0  # Tokens the RNN writes after the prompt; 0 = T - P (pixel data:
  #                          rounded up so that prompt + samples are whole images).
  c.eval.temperature = 1.0  # Sampling temperature; 0 = greedy.
  c.eval.top_k = 0  # Sample among the k most likely tokens; 0 = all.
  c.eval.solver = "scan"  # How the RNN's teacher-forced reads are solved: scan | deer | quasi_deer.

  c.pipeline = ml_collections.ConfigDict()
  c.pipeline.order = ()  # Stages run one after another into workdir/STAGE, e.g. ("smt", "dmt");
  #                        () = a single run of this config in workdir.
  c.pipeline.stages = ml_collections.ConfigDict()  # STAGE -> overrides of the fields above; a
  #                        stage's ckpt.init_from may name an earlier stage.
  return c


FREE_FORM = ("data.kwargs", "pipeline.stages")  # Groups whose keys are not fixed by the schema.


def strict(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A locked copy of cfg: `update` and `update_from_flattened_dict` on it raise KeyError for a
  field the schema does not have, except inside the FREE_FORM groups."""
  out = ml_collections.ConfigDict(cfg.to_dict())
  out.lock()
  for dotted in FREE_FORM:
    group = out
    for part in dotted.split("."):
      group = group[part]
    group.unlock()
  return out


def upgrade_saved(saved: dict) -> dict:
  """A saved config (config.json as a dict) in today's schema: the bool
  dmt.backprop_through_rollout that dmt.grad_steps replaced becomes grad_steps 0 (True: the whole
  rollout) or 1 (False: a stop-gradient before every update), wherever a group holds it (the dmt
  group, pipeline stages)."""
  out = {k: upgrade_saved(v) if isinstance(v, dict) else v for k, v in saved.items()}
  if "backprop_through_rollout" in out:
    out["grad_steps"] = 0 if out.pop("backprop_through_rollout") else 1
  return out


def changed_fields(saved: dict, cfg: ml_collections.ConfigDict) -> dict:
  """{dotted field: (saved value, cfg's value)} of the fields that both a saved config
  (config.json as a dict) and cfg hold, where their values differ (JSON values: tuples as
  lists). Fields only one of them has are left out: a schema grows between runs."""
  stored, current = flatten(saved), flatten(json.loads(cfg.to_json_best_effort()))
  return {k: (stored[k], v) for k, v in current.items() if k in stored and stored[k] != v}


def flatten(tree: dict, prefix: str = "") -> dict:
  """{dotted name: value} of a nested dict's non-dict values."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
