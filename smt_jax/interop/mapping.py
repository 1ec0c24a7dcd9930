"""The PyTorch original's Teacher / RNN state_dicts <-> smt_jax's parameter tree.

Every tensor of the original goes to exactly one smt_jax parameter (rotary `inv_freq` buffers,
which hold no learned value, are checked instead); every smt_jax parameter must receive one. The
config must carry `smt_jax.interop.original_options` (head width 64, half-rotary heads, a shared
teacher embedding), which `config_for` sets from the tensors' shapes.

Layouts: x-transformers stores Linear weights as (out, in), heads as (h d) on the out axis, and
its RMSNorm gains with a unit offset (gain = g + 1). It rotates interleaved feature pairs (0, 1),
(2, 3), .. of the first half of each head; smt_jax rotates pairs (i, i + r/2) of the first r
features, so queries and keys are permuted within each head (q . k is unchanged).
"""

import re

import jax
import ml_collections
import numpy as np

from smt_jax.interop import ORIGINAL_HEAD_DIM, ORIGINAL_ROTARY_FRACTION, original_options


class MappingError(ValueError):
  """The tensors do not fit the parameter tree; the message names every tensor and place."""


def _layers(sd: dict, prefix: str) -> int:
  found = {
    int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r"layers\.(\d+)\.", k)] if m
  }
  if not found or len(found) % 2 or sorted(found) != list(range(len(found))):
    raise MappingError(
      f"{prefix}layers.*: expected attention/feed-forward layer pairs 0..2n-1, "
      f"found {sorted(found)}."
    )
  return len(found) // 2


def sizes(teacher: dict, rnn: dict) -> dict:
  """The original's sizes, read from its tensors' shapes."""
  V, d = teacher["embed.weight"].shape
  K = teacher["encoder_mem_register.weight"].shape[0]
  inner = teacher["encoder.layers.0.1.to_q.weight"].shape[0]
  hidden = teacher["encoder.layers.1.1.ff.0.0.weight"].shape[0]
  if inner % ORIGINAL_HEAD_DIM or hidden % d:
    raise MappingError(
      f"teacher encoder.layers.0.1.to_q.weight {teacher['encoder.layers.0.1.to_q.weight'].shape}: "
      f"not heads x {ORIGINAL_HEAD_DIM} (x-transformers' default head width)."
    )
  return dict(
    vocab_size=V,
    d_model=d,
    mem_tokens=K,
    num_heads=inner // ORIGINAL_HEAD_DIM,
    mlp_ratio=hidden // d,
    encoder_depth=_layers(teacher, "encoder."),
    decoder_depth=_layers(teacher, "decoder."),
    rnn_depth=_layers(rnn, "rnn."),
    readout_depth=_layers(rnn, "decoder."),
  )


def config_for(
  cfg: ml_collections.ConfigDict, teacher: dict, rnn: dict
) -> ml_collections.ConfigDict:
  """cfg with the original's options and the sizes of these tensors (in place; returned)."""
  s = sizes(teacher, rnn)
  cfg.data.vocab_size = s["vocab_size"]
  m = cfg.model
  m.d_model, m.num_heads, m.mem_tokens = s["d_model"], s["num_heads"], s["mem_tokens"]
  m.teacher.encoder_depth, m.teacher.decoder_depth = s["encoder_depth"], s["decoder_depth"]
  m.rnn.depth, m.rnn.readout_depth = s["rnn_depth"], s["readout_depth"]
  original_options(cfg)
  m.mlp_ratio = s["mlp_ratio"]
  return cfg


def _rotary_permutation(head_dim: int, rotary: int) -> np.ndarray:
  """smt_jax feature j of a head <- x-transformers feature perm[j]."""
  return np.concatenate(
    [np.arange(0, rotary, 2), np.arange(1, rotary, 2), np.arange(rotary, head_dim)]
  )


def _qk(w, heads, head_dim, perm):
  """(h*Dh, d) -> (d, h, Dh), features permuted within each head."""
  return w.reshape(heads, head_dim, -1)[:, perm, :].transpose(2, 0, 1)


def _transformer_rules(
  src: str, dst: tuple, depth: int, heads: int, head_dim: int, norm_offset: float
) -> dict:
  """{smt_jax path: (torch key, transform)} of one x-transformers Encoder / Decoder."""
  perm = _rotary_permutation(head_dim, int(head_dim * ORIGINAL_ROTARY_FRACTION))
  gain = lambda g: g + norm_offset
  rules = {}
  for i in range(depth):
    a, f = f"{src}layers.{2 * i}.", f"{src}layers.{2 * i + 1}."
    b = dst + ("transformer", f"block_{i}")
    rules.update(
      {
        b + ("norm_attn", "scale"): (a + "0.0.g", gain),
        b + ("attn", "query", "kernel"): (
          a + "1.to_q.weight",
          lambda w: _qk(w, heads, head_dim, perm),
        ),
        b + ("attn", "key", "kernel"): (
          a + "1.to_k.weight",
          lambda w: _qk(w, heads, head_dim, perm),
        ),
        b + ("attn", "value", "kernel"): (
          a + "1.to_v.weight",
          lambda w: w.reshape(heads, head_dim, -1).transpose(2, 0, 1),
        ),
        b + ("attn", "out", "kernel"): (
          a + "1.to_out.weight",
          lambda w: w.T.reshape(heads, head_dim, -1),
        ),
        b + ("norm_mlp", "scale"): (f + "0.0.g", gain),
        b + ("mlp", "up", "kernel"): (f + "1.ff.0.0.weight", np.transpose),
        b + ("mlp", "up", "bias"): (f + "1.ff.0.0.bias", None),
        b + ("mlp", "down", "kernel"): (f + "1.ff.2.weight", np.transpose),
        b + ("mlp", "down", "bias"): (f + "1.ff.2.bias", None),
      }
    )
  rules[dst + ("transformer", "final_norm", "scale")] = (f"{src}final_norm.g", gain)
  return rules


def rules(cfg: ml_collections.ConfigDict, norm_offset: float = 1.0) -> dict:
  """{smt_jax path tuple: ("teacher" | "rnn", torch key, transform or None)}."""
  m = cfg.model
  heads, head_dim = m.num_heads, m.head_dim or m.d_model // m.num_heads
  out = {}

  def add(model, table):
    out.update({path: (model, key, fn) for path, (key, fn) in table.items()})

  add(
    "teacher",
    {
      ("encoder", "embed", "embedding"): ("embed.weight", None),
      ("encoder", "registers"): ("encoder_mem_register.weight", None),
      ("decoder", "head", "kernel"): ("to_logits.weight", np.transpose),
      ("decoder", "head", "bias"): ("to_logits.bias", None),
    },
  )
  add(
    "teacher",
    _transformer_rules(
      "encoder.", ("encoder",), m.teacher.encoder_depth, heads, head_dim, norm_offset
    ),
  )
  add(
    "teacher",
    _transformer_rules(
      "decoder.", ("decoder",), m.teacher.decoder_depth, heads, head_dim, norm_offset
    ),
  )
  add(
    "rnn",
    {
      ("updater", "core", "embed", "embedding"): ("embed.weight", None),
      ("readout", "decoder", "head", "kernel"): ("to_logits.weight", np.transpose),
      ("readout", "decoder", "head", "bias"): ("to_logits.bias", None),
    },
  )
  add(
    "rnn",
    _transformer_rules("rnn.", ("updater", "core"), m.rnn.depth, heads, head_dim, norm_offset),
  )
  add(
    "rnn",
    _transformer_rules(
      "decoder.", ("readout", "decoder"), m.rnn.readout_depth, heads, head_dim, norm_offset
    ),
  )
  return out


def _check_inv_freq(name: str, value: np.ndarray, head_dim: int) -> str | None:
  rotary = int(head_dim * ORIGINAL_ROTARY_FRACTION)
  expected = 1.0 / (10_000.0 ** (np.arange(0, rotary, 2, dtype=np.float32) / rotary))
  if value.shape != expected.shape or not np.allclose(value, expected, rtol=1e-6):
    return (
      f"{name} {value.shape}: rotary frequencies differ from base 10000 over "
      f"{rotary} features, which smt_jax's RoPE computes"
    )
  return None


def to_params(
  cfg: ml_collections.ConfigDict, teacher: dict, rnn: dict, norm_offset: float = 1.0
) -> dict:
  """smt_jax parameters {"encoder", "decoder", "updater", "readout"} from the original's
  state_dicts (name -> array). Raises MappingError naming every tensor without a place, every
  place without a tensor, and every shape that does not fit."""
  from smt_jax.models import init_params  # Local: keeps the import light.

  target = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  places = {
    tuple(k.key for k in path): leaf
    for path, leaf in jax.tree_util.tree_flatten_with_path(target)[0]
  }
  sources = {
    "teacher": {k: np.asarray(v) for k, v in teacher.items()},
    "rnn": {k: np.asarray(v) for k, v in rnn.items()},
  }
  head_dim = cfg.model.head_dim or cfg.model.d_model // cfg.model.num_heads
  used, problems, flat = set(), [], {}
  table = rules(cfg, norm_offset)
  for path, (model, key, fn) in table.items():
    name = "/".join(path)
    if path not in places:
      problems.append(
        f"{model} tensor {key!r} has no place: smt_jax has no parameter {name} "
        "(does the config carry original_options?)"
      )
      continue
    if key not in sources[model]:
      problems.append(
        f"smt_jax parameter {name} {places[path].shape} has no tensor: {model} has no {key!r}"
      )
      continue
    used.add((model, key))
    value = sources[model][key].astype(np.float32)
    try:
      value = fn(value) if fn is not None else value
    except (ValueError, IndexError):  # A reshape into heads that cannot work.
      value = None
    if value is None or value.shape != places[path].shape:
      problems.append(
        f"{model} tensor {key!r} {sources[model][key].shape} does not fit smt_jax "
        f"parameter {name} {places[path].shape}"
      )
      continue
    flat[path] = value
  for path, leaf in places.items():
    if (
      path not in flat
      and not any(p.startswith(f"smt_jax parameter {'/'.join(path)} ") for p in problems)
      and path not in table
    ):
      problems.append(
        f"smt_jax parameter {'/'.join(path)} {leaf.shape} has no tensor: no "
        "tensor of the original maps to it"
      )
  for model, sd in sources.items():
    for key, value in sd.items():
      if (model, key) in used:
        continue
      if key.endswith("rotary_pos_emb.inv_freq"):
        bad = _check_inv_freq(f"{model} buffer {key!r}", value, head_dim)
        if bad:
          problems.append(bad)
        continue
      problems.append(f"{model} tensor {key!r} {value.shape} has no place in smt_jax's parameters")
  if problems:
    raise MappingError(
      "the original's tensors do not map onto smt_jax's parameters:\n  " + "\n  ".join(problems)
    )
  params = {}
  for path, value in flat.items():
    node = params
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = value
  return params


def by_original_name(cfg: ml_collections.ConfigDict, params: dict) -> dict:
  """A tree shaped like smt_jax's parameters (e.g. gradients), keyed by the original's names:
  {"teacher": {key: array}, "rnn": {key: array}}, arrays in smt_jax's layout (norms and sums
  are the same in either layout). Parameters the tree lacks are left out."""
  out = {"teacher": {}, "rnn": {}}
  for path, (model, key, fn) in rules(cfg).items():
    node = params
    try:
      for part in path:
        node = node[part]
    except KeyError:
      continue
    out[model][key] = np.asarray(node)
  return out
