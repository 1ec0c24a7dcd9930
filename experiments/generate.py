"""Generates from a trained run: python experiments/generate.py --workdir=DIR [--stage=STAGE]
(--prompt=TEXT | --prompt_ids=3,1,4 | --prompt_image=FILE.png) [--length=N --temperature=T
--top_k=K --seed=S --num_samples=B --model=rnn|teacher --out=FILE.png].

DIR is a run's workdir, or a pipeline folder with --stage naming the stage (smt, dmt, bptt, ...).
The prompt is text (encoded by the dataset's tokenizer: byte-level streams such as kjv), token
ids, or for pixel data the top --prompt_rows rows of a grey image (PNG or .npy, the dataset's
image size). The RNN reads the prompt token by token from where the method's RNN read starts
(SMT / DMT: m_empty; BPTT: its initial memory; smt_jax.objectives.read_start), then writes
--length tokens, each drawn from its readout (temperature 0 = greedy; top_k > 0 keeps the k
likeliest) and read back. --model=teacher generates with the encoder-decoder instead: at each
step the encoder reads the last Tc tokens and the decoder predicts the next one. Text prints to
stdout; pixel data writes a PNG (--out, default DIR/generated.png). The same seed gives the same
output. Any field of the run's config can be overridden (--config.data.path=...). Bad input exits
with status 1 and one line.
"""

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags

from experiments import cli
from smt_jax.config import base_config
from smt_jax.data import make_dataset
from smt_jax.errors import ConfigError
from smt_jax.eval import load_run_config
from smt_jax.eval.config import image_pixels
from smt_jax.eval.write import sample_logits, sample_rnn, scratch_prompt_memory
from smt_jax.models import Models, build_models, readout_from_decoder
from smt_jax.objectives import method_of, read_start, reads_through_decoder
from smt_jax.objectives.windows import encoder_memories
from smt_jax.train import load_params

MODELS = ("rnn", "teacher")


def define(fv: flags.FlagValues, argv: list[str]) -> None:
  config_flags.DEFINE_config_dict(
    "config", base_config(), "Overrides of the run's config.", flag_values=fv, sys_argv=argv
  )
  flags.DEFINE_string("workdir", None, "A run's workdir, or a pipeline folder.", flag_values=fv)
  flags.DEFINE_string("stage", "", "The stage of a pipeline folder (e.g. dmt).", flag_values=fv)
  flags.DEFINE_string("prompt", None, "Prompt text (byte-level data).", flag_values=fv)
  flags.DEFINE_string("prompt_ids", None, "Prompt token ids, comma-separated.", flag_values=fv)
  flags.DEFINE_string(
    "prompt_image",
    None,
    "Pixel data: a grey image (PNG or .npy) whose top rows prompt.",
    flag_values=fv,
  )
  flags.DEFINE_integer(
    "prompt_rows", 0, "Rows of --prompt_image read as the prompt; 0 = the top half.", flag_values=fv
  )
  flags.DEFINE_integer(
    "length", 0, "Tokens to write; 0 = 200 (text) or the rest of the image.", flag_values=fv
  )
  flags.DEFINE_float("temperature", 1.0, "Sampling temperature; 0 = greedy.", flag_values=fv)
  flags.DEFINE_integer("top_k", 0, "Sample among the k likeliest tokens; 0 = all.", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Sampling seed: the same seed, the same output.", flag_values=fv)
  flags.DEFINE_integer("num_samples", 1, "Samples, each from the same prompt.", flag_values=fv)
  flags.DEFINE_enum("model", "rnn", MODELS, "rnn, or teacher (encoder-decoder).", flag_values=fv)
  flags.DEFINE_string(
    "out", "", "Pixel data: the PNG; default WORKDIR/generated.png.", flag_values=fv
  )


def generate_rnn(
  cfg,
  models: Models,
  params: dict,
  prompt: jax.Array,
  key: jax.Array,
  length: int,
  temperature: float,
  top_k: int,
) -> jax.Array:
  """`length` tokens (B, length) written by the RNN after it reads prompt (B, P), P >= 1, from
  where cfg's method starts the RNN read (m_empty or the updater's initial memory), through the
  decoder copy where the method reads through it."""
  rnn = readout_from_decoder(params) if reads_through_decoder(cfg) else params
  m = scratch_prompt_memory(models, rnn, prompt, read_start(cfg))
  return sample_rnn(models, rnn, m, key, length, temperature, top_k)


def generate_teacher(
  models: Models,
  params: dict,
  prompt: jax.Array,
  key: jax.Array,
  length: int,
  temperature: float,
  top_k: int,
) -> jax.Array:
  """`length` tokens (B, length) written by the encoder-decoder: token j is drawn from the
  decoder's prediction (empty future) from the encoder memory of the last Tc tokens so far;
  token j uses the j-th of jax.random.split(key, length), as `sample_rnn` does."""
  batch, p = prompt.shape
  buffer = jnp.concatenate([prompt, jnp.zeros((batch, length), prompt.dtype)], axis=1)
  empty = jnp.zeros((batch, 0), jnp.int32)

  def body(buf, inputs):
    j, step_key = inputs
    end = jnp.full((batch, 1), p - 1 + j)  # Later tokens are outside the (causal) window.
    m = encoder_memories(models, params, buf, end)[:, 0]
    token = sample_logits(step_key, models.decode(params, m, empty)[:, 0], temperature, top_k)
    return jax.lax.dynamic_update_slice_in_dim(buf, token[:, None], p + j, axis=1), token

  keys = jax.random.split(key, length)
  return jnp.swapaxes(jax.lax.scan(body, buffer, (jnp.arange(length), keys))[1], 0, 1)


def resolve_workdir(workdir: pathlib.Path, stage: str) -> pathlib.Path:
  """The run folder of --workdir / --stage; ConfigError naming the stages of a pipeline folder."""
  if not (workdir / "config.json").is_file():
    raise ConfigError(f"{workdir}/config.json not found: --workdir must be a run's workdir.")
  try:
    stored = json.loads((workdir / "config.json").read_text())
  except ValueError as e:
    raise ConfigError(f"{workdir}/config.json is not valid JSON ({e}).") from None
  order = tuple((stored.get("pipeline") or {}).get("order") or ())
  if not order:
    if stage:
      raise ConfigError(f"--stage={stage}: {workdir} is one run, not a pipeline folder.")
    return workdir
  if stage not in order:
    raise ConfigError(
      f"{workdir} is a pipeline folder; its stages are {', '.join(order)}: pass "
      f"--stage=STAGE (e.g. --stage={order[-1]})."
    )
  return workdir / stage


def prompt_tokens(fv: flags.FlagValues, ds, vocab_size: int) -> np.ndarray:
  """The prompt as int32 (P,), P >= 1, from exactly one of --prompt, --prompt_ids,
  --prompt_image."""
  given = [n for n in ("prompt", "prompt_ids", "prompt_image") if fv[n].value is not None]
  if len(given) != 1:
    raise ConfigError(
      "give exactly one of --prompt (text), --prompt_ids (token ids) or --prompt_image "
      f"(pixel data); got {', '.join('--' + n for n in given) or 'none'}."
    )
  tokenizer = getattr(ds, "tokenizer", None)
  if given[0] == "prompt":
    if not hasattr(tokenizer, "encode") or image_pixels(ds):
      raise ConfigError(
        f"--prompt: the {ds.name if hasattr(ds, 'name') else 'data'!r} data has no text "
        "tokenizer; pass --prompt_ids (or --prompt_image for pixel data)."
      )
    tokens = np.asarray(tokenizer.encode(fv["prompt"].value), np.int32)
  elif given[0] == "prompt_ids":
    try:
      tokens = np.array([int(t) for t in fv["prompt_ids"].value.split(",") if t.strip()], np.int32)
    except ValueError:
      raise ConfigError(
        f"--prompt_ids={fv['prompt_ids'].value!r}: not comma-separated integers."
      ) from None
  else:
    tokens = image_prompt(fv["prompt_image"].value, fv["prompt_rows"].value, tokenizer)
  if tokens.size == 0:
    raise ConfigError("the prompt is empty; the RNN needs at least one token to read.")
  bad = tokens[(tokens < 0) | (tokens >= vocab_size)]
  if bad.size:
    raise ConfigError(f"prompt token {int(bad[0])} is outside [0, data.vocab_size={vocab_size}).")
  return tokens


def image_prompt(path: str, rows: int, tokenizer) -> np.ndarray:
  """Raster tokens of the top `rows` rows (0 = half) of a grey image file, of the tokenizer's
  image size: .npy of integers 0..255, or a PNG (grey or colour, averaged to grey)."""
  height, width = getattr(tokenizer, "height", 0), getattr(tokenizer, "width", 0)
  if not height:
    raise ConfigError("--prompt_image needs pixel data; this run's data is tokens.")
  try:
    if path.endswith(".npy"):
      image = np.load(path)
    else:
      import matplotlib.image

      image = matplotlib.image.imread(path)
      image = image[..., :3].mean(-1) if image.ndim == 3 else image
      image = image * 255 if image.dtype.kind == "f" and image.max() <= 1 else image
  except (OSError, ValueError) as e:
    raise ConfigError(f"--prompt_image={path}: cannot read it ({e}).") from None
  if image.shape != (height, width):
    raise ConfigError(
      f"--prompt_image={path}: shape {image.shape}, but the data's images are {height}x{width}."
    )
  rows = rows or height // 2
  if not 1 <= rows < height:
    raise ConfigError(f"--prompt_rows={rows} must be in [1, {height - 1}].")
  return np.clip(np.rint(image[:rows]), 0, 255).astype(np.int32).reshape(-1)


def body(fv: flags.FlagValues) -> int:
  workdir = resolve_workdir(pathlib.Path(fv["workdir"].value), fv["stage"].value)
  cfg = load_run_config(str(workdir), config_flags.get_override_values(fv["config"]))
  ds = make_dataset(cfg.data, "test")
  prompt = prompt_tokens(fv, ds, cfg.data.vocab_size)
  pixels = image_pixels(ds)
  length = fv["length"].value or (pixels - prompt.size % pixels if pixels else 200)
  if length < 1 or fv["num_samples"].value < 1 or fv["top_k"].value < 0:
    raise ConfigError("--length and --num_samples must be >= 1, --top_k >= 0.")
  if fv["temperature"].value < 0:
    raise ConfigError(f"--temperature={fv['temperature'].value} must be >= 0.")
  if fv["model"].value == "teacher" and not method_of(cfg).has_teacher:
    raise ConfigError(f"--model=teacher: a {cfg.method} run has no teacher; use --model=rnn.")
  params, step = load_params(workdir)
  models = build_models(cfg)
  batch = jnp.broadcast_to(jnp.asarray(prompt), (fv["num_samples"].value, prompt.size))
  args = (jax.random.key(fv["seed"].value), length, fv["temperature"].value, fv["top_k"].value)
  if fv["model"].value == "teacher":
    fn = jax.jit(lambda p, x, k: generate_teacher(models, p, x, k, *args[1:]))
  else:
    fn = jax.jit(lambda p, x, k: generate_rnn(cfg, models, p, x, k, *args[1:]))
  tokens = np.asarray(fn(params, batch, args[0]))
  print(
    f"{fv['model'].value} of {workdir} (step {step}, {cfg.method}): {prompt.size} prompt tokens, "
    f"{length} written",
    file=sys.stderr,
  )
  full = np.concatenate([np.asarray(batch), tokens], axis=1)
  if pixels:
    from smt_jax.eval import plots

    out = fv["out"].value or str(workdir / "generated.png")
    whole = full[:, : full.shape[1] // pixels * pixels]
    plots.plot_image_grid(
      {f"{fv['model'].value}": ds.decode(whole)},
      out,
      f"{prompt.size}-pixel prompt, then {length} written (temperature "
      f"{fv['temperature'].value}, top_k {fv['top_k'].value}, seed {fv['seed'].value})",
    )
    print(f"wrote {out}")
  else:
    for row in tokens:  # The prompt, then what was written.
      print(f"{ds.decode(prompt)} || {ds.decode(row)}")
  return 0


def main(argv: list[str] | None = None) -> int:
  """generate.py on `argv` (default sys.argv); returns the exit status."""
  return cli.main(sys.argv if argv is None else argv, __doc__, define, body, base_config())


if __name__ == "__main__":
  sys.exit(main())
