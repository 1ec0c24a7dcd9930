"""The trained RNN alone, as one self-contained file: python -m smt_jax.export WORKDIR --out FILE
[--stage STAGE] [--platforms cpu,cuda].

FILE is a NumPy .npz archive (np.load reads it; nothing pickled) with
  "config.json"      uint8 bytes of JSON: {"method", "start" ("m_empty" | "initial_memory"),
                     "step" (the checkpoint's), "vocab_size", "mem_size" (Z), "model" (the
                     config's model group, which rebuilds the modules with smt_jax), "data"
                     and "eval" (its data and eval groups: the task and the test sequences
                     that experiments/remeasure.py --rnn=FILE reads),
                     "platforms", "params" (the parameter paths, in the exported functions'
                     argument order)}
  "m_start"          float32 (Z,): the memory before x[0] that the RNN read starts from: m_empty,
                     the encoder's memory of the empty past (SMT / DMT), or the updater's initial
                     memory (BPTT); smt_jax.objectives.read_start decides
  "params/GROUP/..." float32 arrays of the updater and readout (the readout is the decoder copy
                     where the method reads through it); no encoder or decoder
  "step.jax_export"  uint8 bytes of jax.export.Exported.serialize(): step(params, m, x) -> m',
                     (B, Z) float32, (B,) int32 -> (B, Z), for any batch size B
  "read.jax_export"  the same for read(params, m) -> logits (B, V) float32
The serialized functions are StableHLO: `jax.export.deserialize(bytes).call(...)` runs them with
no smt_jax model code (`load` does, and shows how); they take `params` as the nested dict of the
"params/..." arrays. Running them needs a platform they were exported for (default: this
machine's backend).
"""

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from smt_jax.checkpointing import load_params
from smt_jax.errors import ConfigError
from smt_jax.eval import load_run_config
from smt_jax.models import RNN_GROUPS, build_models, mem_size, readout_from_decoder
from smt_jax.objectives import read_start, reads_through_decoder

FUNCTIONS = ("step", "read")


def rnn_artefact(cfg, params: dict, step: int, platforms=None) -> dict:
  """{npz key: array} of the RNN of `params` (all groups, as a checkpoint holds them) under cfg,
  as the module docstring lays out."""
  models = build_models(cfg)
  if reads_through_decoder(cfg):
    params = readout_from_decoder(params)
  start = read_start(cfg)
  first = models.empty_memory if start == 0 else models.initial_memory
  m_start = np.asarray(jax.jit(first, static_argnums=1)(params, 1)[0], np.float32)
  rnn = {g: jax.tree.map(np.asarray, params[g]) for g in RNN_GROUPS}
  flat = {"params/" + "/".join(k.key for k in path): v for path, v in _leaves(rnn)}
  platforms = tuple(platforms or (jax.default_backend(),))
  (b,) = jax_export.symbolic_shape("b")
  spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), rnn)
  m = jax.ShapeDtypeStruct((b, mem_size(cfg)), jnp.float32)
  x = jax.ShapeDtypeStruct((b,), jnp.int32)
  fns = {
    "step": (jax.jit(lambda p, m, x: models.step(p, m, x)), (spec, m, x)),
    "read": (jax.jit(lambda p, m: models.read(p, m)), (spec, m)),
  }
  out = {
    f"{name}.jax_export": np.frombuffer(
      jax_export.export(fn, platforms=platforms)(*args).serialize(), np.uint8
    )
    for name, (fn, args) in fns.items()
  }
  meta = {
    "method": cfg.method,
    "start": "m_empty" if start == 0 else "initial_memory",
    "step": step,
    "vocab_size": cfg.data.vocab_size,
    "mem_size": mem_size(cfg),
    "model": cfg.model.to_dict(),
    "data": cfg.data.to_dict(),
    "eval": cfg.eval.to_dict(),
    "platforms": list(platforms),
    "params": list(flat),
  }
  out["config.json"] = np.frombuffer(json.dumps(meta, indent=1).encode(), np.uint8)
  return {**out, "m_start": m_start, **flat}


def _leaves(tree):
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def export_workdir(workdir: str | pathlib.Path, out: str | pathlib.Path, platforms=None) -> dict:
  """Writes the RNN of a run's workdir (its latest checkpoint, with its config.json) to `out`
  (.npz, written through a temp file and a rename); returns the config.json dict."""
  cfg = load_run_config(str(workdir))
  params, step = load_params(workdir)
  arrays = rnn_artefact(cfg, params, step, platforms)
  out = pathlib.Path(out)
  tmp = out.with_name(f".{out.name}.tmp.npz")
  np.savez(tmp, **arrays)
  tmp.replace(out)
  return json.loads(arrays["config.json"].tobytes())


class ExportedRNN:
  """An exported RNN, loaded with numpy and jax.export only: `params` (nested dict), `m_start`
  (Z,), `config` (the config.json dict); `step(m, x)` and `read(m)` run the serialized
  StableHLO; `initial(batch)` is m_start for a batch, (B, Z)."""

  def __init__(self, path: str | pathlib.Path):
    with np.load(path) as f:
      self.config = json.loads(f["config.json"].tobytes())
      self.m_start = f["m_start"]
      self.params = {}
      for key in self.config["params"]:
        node, *parts, leaf = key.split("/")[1:]
        node = self.params.setdefault(node, {})
        for part in parts:
          node = node.setdefault(part, {})
        node[leaf] = f[key]
      self._fns = {n: jax_export.deserialize(bytearray(f[f"{n}.jax_export"])) for n in FUNCTIONS}

  def initial(self, batch_size: int) -> np.ndarray:
    return np.broadcast_to(self.m_start, (batch_size, self.m_start.size))

  def step(self, m, x):
    return self._fns["step"].call(self.params, m, x)

  def read(self, m):
    return self._fns["read"].call(self.params, m)


def load(path: str | pathlib.Path) -> ExportedRNN:
  """The RNN written by `export_workdir`."""
  return ExportedRNN(path)


def main(argv: list[str] | None = None) -> int:
  """The command line; returns the exit status (1 with one line on bad input)."""
  parser = argparse.ArgumentParser(
    prog="python -m smt_jax.export", description=__doc__.split("\n\n")[0]
  )
  parser.add_argument("workdir", help="a run's workdir (a pipeline folder needs --stage)")
  parser.add_argument("--out", required=True, help="the .npz file to write")
  parser.add_argument("--stage", default="", help="the stage of a pipeline folder, e.g. dmt")
  parser.add_argument(
    "--platforms", default="", help="comma-separated, e.g. cpu,cuda; default: this backend"
  )
  args = parser.parse_args(argv)
  workdir = pathlib.Path(args.workdir) / args.stage
  try:
    if not (workdir / "config.json").is_file():
      raise ConfigError(f"{workdir}/config.json not found: name a run's workdir (or --stage).")
    stages = (json.loads((workdir / "config.json").read_text()).get("pipeline") or {}).get("order")
    if stages:
      raise ConfigError(
        f"{workdir} is a pipeline folder; its stages are {', '.join(stages)}: pass --stage=STAGE."
      )
    platforms = [p for p in args.platforms.split(",") if p] or None
    meta = export_workdir(workdir, args.out, platforms)
  except (ConfigError, FileNotFoundError, ValueError) as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 1
  print(
    f"wrote {args.out}: the {meta['method']} RNN of {workdir} (step {meta['step']}), "
    f"Z = {meta['mem_size']}, V = {meta['vocab_size']}, read from {meta['start']}; "
    f"step/read exported for {', '.join(meta['platforms'])}"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
