"""Imports a checkpoint of the PyTorch original (akarshkumar0101/smt) as an smt_jax workdir.

  python -m smt_jax.interop.import_original CKPT --out WORKDIR [--config.data.path=DIR ...]

CKPT is one of:
  - train_smt.py's checkpoint.pt (a torch.save dict with "rnn", "teacher", "opt", "cfg", "itr");
  - a save_dir holding checkpoint.pt, or rnn.pkl and teacher.pkl (util.save_pkl's pickled
    modules, what load_rnn_path / load_teacher_path read; train_dmt.py writes only these);
  - an rnn*.pkl file, with --teacher=teacher*.pkl.
The original's Config (in checkpoint.pt, or cfg.pkl beside the .pkl files) gives Tc, Tf, Td, k
and the dataset; without it they are the original's defaults (256, 64, 64, 1, tinystories).
WORKDIR gets config.json (smt_jax.interop.original_options plus the checkpoint's sizes, Tc, Tf,
dataset) and checkpoints/STEP/ (orbax, STEP = the original's iteration when it is known, else 0)
with a fresh optimizer state: the original's Adam moments are not carried over. Then
`experiments/evaluate.py --workdir=WORKDIR` evaluates it and a DMT run with
`--config.ckpt.init_from=WORKDIR` continues it (experiments/interop/original_dmt.py:WORKDIR is
that run, as train_dmt.py). Reading a checkpoint needs torch (the
`smt_jax[torch]` extra); pickles run code when loaded, so import only checkpoints you trust.
"""

import pathlib
import pickle
import sys

import numpy as np

TORCH_HELP = (
  "reading the PyTorch original's checkpoints needs torch, which smt_jax does not "
  "install by default: pip install 'smt_jax[torch]' (or: pip install torch "
  "--index-url https://download.pytorch.org/whl/cpu)."
)

# Modules whose classes are loaded for real; every other class (the original's Teacher, RNN and
# configs, x-transformers' modules, einops, functools.partial, ...) becomes a plain stub that
# keeps its attributes, so neither the original's source nor x-transformers is needed.
_REAL = ("torch", "collections", "copyreg", "_codecs", "numpy")
_BUILTINS = {
  "set",
  "frozenset",
  "slice",
  "range",
  "complex",
  "int",
  "float",
  "bool",
  "str",
  "bytes",
  "bytearray",
  "dict",
  "list",
  "tuple",
  "object",
}


class Stub:
  """Stands in for a class that is not loaded for real: accepts any construction and state."""

  def __new__(cls, *args, **kwargs):
    return object.__new__(cls)

  def __init__(self, *args, **kwargs):
    self._stub_args = args

  def __setstate__(self, state):
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
      state = state[1] if state[0] is None else {**(state[0] or {}), **state[1]}
    if isinstance(state, dict):
      self.__dict__.update(state)
    else:
      self._stub_state = state

  def __call__(self, *args, **kwargs):
    return self


_stubs: dict = {}


class Unpickler(pickle.Unpickler):
  """pickle.Unpickler that loads torch's classes and stubs every other one."""

  def find_class(self, module, name):
    root = module.split(".")[0]
    if root in _REAL or (module == "builtins" and name in _BUILTINS):
      return super().find_class(module, name)
    key = (module, name)
    if key not in _stubs:
      _stubs[key] = type(name, (Stub,), {"__module__": f"stub.{module}"})
    return _stubs[key]


class _StubPickle:
  """The `pickle_module` handed to torch.load."""

  Unpickler = Unpickler
  load = staticmethod(lambda f, **kw: Unpickler(f, **kw).load())
  __name__ = "smt_jax_stub_pickle"


def _torch():
  try:
    import torch
  except ImportError as e:
    raise ImportError(TORCH_HELP) from e
  return torch


def _numpy(tensor) -> np.ndarray:
  return tensor.detach().cpu().float().numpy()


def module_state(obj, prefix: str = "") -> tuple[dict, list]:
  """(state_dict as numpy arrays, RMSNorm unit_offset values) of a pickled nn.Module (real or
  stub), read from its _parameters / _buffers / _modules as torch's state_dict does."""
  state, offsets = {}, []
  d = obj.__dict__
  if type(obj).__name__ == "RMSNorm" and "unit_offset" in d:
    offsets.append(bool(d["unit_offset"]))
  for name, p in (d.get("_parameters") or {}).items():
    if p is not None:
      state[prefix + name] = _numpy(p)
  skip = d.get("_non_persistent_buffers_set") or set()
  for name, b in (d.get("_buffers") or {}).items():
    if b is not None and name not in skip:
      state[prefix + name] = _numpy(b)
  for name, child in (d.get("_modules") or {}).items():
    if child is not None:
      sub, offs = module_state(child, f"{prefix}{name}.")
      state.update(sub)
      offsets += offs
  return state, offsets


def _load_pickle(path: pathlib.Path):
  _torch()  # Tensors inside the pickle are rebuilt by torch.
  with open(path, "rb") as f:
    return Unpickler(f).load()


def read_checkpoint(ckpt: str, teacher_path: str | None = None) -> dict:
  """{"teacher", "rnn": state_dicts (numpy), "cfg": the original's Config (stub) or None,
  "itr": int or None, "norm_offset": float or None (None = unknown), "source": str}."""
  path = pathlib.Path(ckpt)
  if path.is_dir():
    if (path / "checkpoint.pt").is_file():
      return read_checkpoint(str(path / "checkpoint.pt"))
    if (path / "rnn.pkl").is_file() and (path / "teacher.pkl").is_file():
      return read_checkpoint(str(path / "rnn.pkl"), str(path / "teacher.pkl"))
    raise FileNotFoundError(f"{path}: holds neither checkpoint.pt nor rnn.pkl + teacher.pkl.")
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such checkpoint.")
  if path.suffix == ".pkl":
    if teacher_path is None:
      raise ValueError(f"{path}: a pickled module needs its partner: --teacher=TEACHER.pkl.")
    rnn, rnn_offsets = module_state(_load_pickle(path))
    teacher, teacher_offsets = module_state(_load_pickle(pathlib.Path(teacher_path)))
    offsets = set(rnn_offsets + teacher_offsets)
    if len(offsets) > 1:
      raise ValueError(f"{path}, {teacher_path}: RMSNorms disagree on unit_offset.")
    norm_offset = (1.0 if offsets.pop() else 0.0) if offsets else None
    cfg_path = path.parent / "cfg.pkl"  # util.save_pkl writes the Config beside the modules.
    return {
      "teacher": teacher,
      "rnn": rnn,
      "cfg": _load_pickle(cfg_path) if cfg_path.is_file() else None,
      "itr": None,
      "norm_offset": norm_offset,
      "source": f"{path} + {teacher_path}",
    }
  torch = _torch()
  blob = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_StubPickle)
  missing = [k for k in ("rnn", "teacher") if k not in blob]
  if missing:
    raise ValueError(
      f"{path}: a train_smt.py checkpoint holds 'rnn' and 'teacher'; this one "
      f"lacks {missing} (keys: {sorted(blob)})."
    )
  return {
    "teacher": {k: _numpy(v) for k, v in blob["teacher"].items()},
    "rnn": {k: _numpy(v) for k, v in blob["rnn"].items()},
    "cfg": blob.get("cfg"),
    "itr": blob.get("itr"),
    "norm_offset": None,
    "source": str(path),
  }


def _field(obj, name, default=None):
  return getattr(obj, name, default) if obj is not None else default


def build_config(read: dict, overrides=None, method: str | None = None):
  """The smt_jax config of a read checkpoint: original options, its sizes, its Tc / Tf / Td / k
  and dataset when its Config is known, then dotted `overrides` ({"data.path": DIR, ...})."""
  from smt_jax.config import base_config
  from smt_jax.data.registry import STREAM_NAMES
  from smt_jax.errors import ConfigError
  from smt_jax.interop import mapping

  cfg = base_config()
  orig = read["cfg"]
  tcfg, rcfg = _field(orig, "teacher"), _field(orig, "rnn")
  for c, what in ((tcfg, "teacher"), (rcfg, "rnn")):
    if _field(c, "mem_fsq") is not None or _field(c, "mem_rms_norm", True) is not True:
      raise ConfigError(
        f"the original's {what} config uses mem_fsq={_field(c, 'mem_fsq')} / "
        f"mem_rms_norm={_field(c, 'mem_rms_norm')}: only the defaults (None / "
        "True) are supported."
      )
    if _field(c, "rotary_pos_emb", True) is not True or _field(c, "use_rmsnorm", True) is not True:
      raise ConfigError(
        f"the original's {what} config turns off rotary_pos_emb or use_rmsnorm: not supported."
      )
  stage = _field(orig, "dmt") or _field(orig, "smt")
  cfg.model.teacher.Tc = int(_field(stage, "Tc", 256))
  cfg.model.teacher.Tf = int(_field(stage, "Tf", 64))
  mapping.config_for(cfg, read["teacher"], read["rnn"])
  heads = _field(tcfg, "n_heads")
  if heads is not None and heads != cfg.model.num_heads:
    raise ConfigError(
      f"the original's teacher.n_heads={heads}, but its tensors hold "
      f"{cfg.model.num_heads} heads of width 64: not x-transformers' default "
      "head width, which smt_jax.interop assumes."
    )
  dataset = _field(orig, "dataset", "tinystories")
  if dataset in STREAM_NAMES:
    cfg.data.name = dataset
  cfg.data.vocab_size = read["teacher"]["embed.weight"].shape[0]
  overrides = dict(overrides or {})
  for dotted, value in overrides.items():  # {"data.path": "/data/kjv", ...}
    *groups, leaf = dotted.split(".")
    node = cfg
    for group in groups:
      node = node[group]
    node[leaf] = value
  # What follows from Tc and Tf (the checkpoint's, or overridden), unless overridden itself.
  derived = {}
  cfg.method = method or ("dmt" if _field(orig, "dmt") is not None else "smt")
  tc, tf = cfg.model.teacher.Tc, cfg.model.teacher.Tf
  derived["smt.timestep"] = tc - 1
  steps = int(overrides.get("train.num_steps", _field(orig, "n_iters", 0) or read.get("itr") or 1))
  derived["train.num_steps"] = steps  # The original's n_iters, and its 1 % warmup.
  derived["optim.warmup_steps"] = steps // 100
  derived["dmt.start"] = tc - 1
  # eval.prefix stays -1 = Tc: beside the read from x[0] (from m_empty, which the original never
  # trained), evaluation reads with the RNN from a full window's memory, as the original does.
  if cfg.method == "dmt":
    Td = int(overrides.get("dmt.Td", _field(stage, "Td", 64)))
    derived.update(
      {
        "dmt.Td": Td,
        "dmt.k": int(_field(stage, "k", 1)),
        "data.T": tc + Td + tf,
      }
    )
  else:  # The original's SMT batch (a DMT stage sets data.T = Tc + Td + Tf and dmt.Td).
    derived.update({"data.T": tc + tf, "dmt.Td": 0, "dmt.k": 1})
  for dotted, value in derived.items():
    if dotted not in overrides:
      group, leaf = dotted.split(".")
      cfg[group][leaf] = value
  return cfg


def import_checkpoint(
  ckpt: str,
  out: str,
  teacher_path: str | None = None,
  overrides=None,
  method: str | None = None,
  norm_offset: float | None = None,
) -> dict:
  """Reads CKPT, maps it and writes WORKDIR; returns {"config", "step", "source", "workdir"}."""
  read = read_checkpoint(ckpt, teacher_path)
  return write_workdir(read, out, overrides, method, norm_offset)


def write_workdir(
  read: dict, out: str, overrides=None, method: str | None = None, norm_offset: float | None = None
) -> dict:
  """config.json and checkpoints/STEP of a read checkpoint (see read_checkpoint)."""
  import jax

  from smt_jax.checkpointing import SUBDIR, Checkpointer
  from smt_jax.interop import mapping
  from smt_jax.train.optimizer import make_optimizer
  from smt_jax.train.validate import validate_model
  from smt_jax.train.workdir import write_atomic

  cfg = build_config(read, overrides, method)
  validate_model(cfg)
  offset = norm_offset if norm_offset is not None else read.get("norm_offset")
  params = mapping.to_params(cfg, read["teacher"], read["rnn"], 1.0 if offset is None else offset)
  params = jax.tree.map(jax.numpy.asarray, params)
  workdir = pathlib.Path(out)
  workdir.mkdir(parents=True, exist_ok=True)
  if (workdir / SUBDIR).exists() and any((workdir / SUBDIR).iterdir()):
    raise FileExistsError(f"{workdir / SUBDIR} is not empty: import into a new --out folder.")
  write_atomic(workdir / "config.json", cfg.to_json_best_effort(indent=2) + "\n")
  step = int(read.get("itr") or 0)
  ckpt = Checkpointer(workdir / SUBDIR, cfg.ckpt.keep)
  try:
    ckpt.save(step, params, make_optimizer(cfg).init(params))
  finally:
    ckpt.close()
  return {"config": cfg, "step": step, "source": read["source"], "workdir": str(workdir)}


def main(argv=None):
  from absl import app, flags
  from ml_collections import config_flags

  from smt_jax.config import base_config
  from smt_jax.errors import ConfigError

  flags.DEFINE_string("out", None, "New workdir to write (config.json, checkpoints/).")
  flags.DEFINE_string("teacher", None, "teacher*.pkl, when CKPT is an rnn*.pkl.")
  flags.DEFINE_enum(
    "method",
    None,
    ["smt", "dmt"],
    "The method written to config.json (default: dmt for a train_dmt.py Config, else smt).",
  )
  flags.DEFINE_float(
    "norm_offset",
    None,
    "Added to RMSNorm gains g: 1 for x-transformers' unit-offset norms "
    "(norm_add_unit_offset=True, its default in 2.18.5), 0 for gains stored without it. "
    "Default: what pickled modules say, else 1.",
  )
  config_flags.DEFINE_config_dict(
    "config", base_config(), "Overrides, e.g. --config.data.path=DIR."
  )
  flags.mark_flags_as_required(["out"])

  def run(args):
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax logs every file at INFO.
    if len(args) != 2:
      raise app.UsageError("usage: python -m smt_jax.interop.import_original CKPT --out WORKDIR")
    F = flags.FLAGS
    overrides = config_flags.get_override_values(F["config"])
    try:
      result = import_checkpoint(args[1], F.out, F.teacher, overrides, F.method, F.norm_offset)
    except (ImportError, ConfigError, ValueError, FileNotFoundError, FileExistsError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    cfg = result["config"]
    m = cfg.model
    print(
      f"imported {result['source']} -> {result['workdir']} (step {result['step']}, method "
      f"{cfg.method}): d {m.d_model}, heads {m.num_heads} x 64, K {m.mem_tokens}, encoder "
      f"{m.teacher.encoder_depth} / decoder {m.teacher.decoder_depth} / updater {m.rnn.depth} "
      f"/ readout {m.rnn.readout_depth}, V {cfg.data.vocab_size}, Tc {m.teacher.Tc}, Tf "
      f"{m.teacher.Tf}"
    )

  app.run(run, argv)


if __name__ == "__main__":
  main()
