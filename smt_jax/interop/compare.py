"""Compares smt_jax, loaded with the original's weights, against the original's outputs saved in
an equivalence fixture (experiments/interop/make_fixture.py). No torch needed.

  python -m smt_jax.interop.compare FIXTURE.npz   # prints the largest differences per quantity
"""

import json
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smt_jax.config import base_config
from smt_jax.interop import mapping


def load(path: str) -> tuple[ml_collections.ConfigDict, dict, dict, dict]:
  """(fixture sizes, teacher state_dict, rnn state_dict, {name: array} of everything else)."""
  f = np.load(path)
  arrays = {k: f[k] for k in f.files}
  sizes = json.loads(str(arrays.pop("config")))
  for name, row in zip(json.loads(str(arrays.pop("grad_names"))), arrays.pop("grads")):
    arrays[name] = row
  teacher = {
    k[len("w/teacher/") :]: arrays.pop(k) for k in list(arrays) if k.startswith("w/teacher/")
  }
  rnn = {k[len("w/rnn/") :]: arrays.pop(k) for k in list(arrays) if k.startswith("w/rnn/")}
  return sizes, teacher, rnn, arrays


def config(sizes: dict, teacher: dict, rnn: dict, method: str = "smt") -> ml_collections.ConfigDict:
  """The smt_jax config of a fixture: the original's options and sizes, T of `method`'s batch."""
  cfg = base_config()
  cfg.model.teacher.Tc, cfg.model.teacher.Tf = sizes["Tc"], sizes["Tf"]
  mapping.config_for(cfg, teacher, rnn)
  cfg.method = method
  cfg.data.T = {
    "smt": sizes["Tc"] + sizes["Tf"],
    "dmt": sizes["Tc"] + sizes["Td"] + sizes["Tf"],
    "bptt": sizes["T_bptt"],
  }[method]
  cfg.dmt.Td, cfg.dmt.k = sizes["Td"], sizes["k"]
  return cfg


def _grad_stats(cfg, grads, groups) -> dict:
  named = mapping.by_original_name(cfg, {g: grads[g] for g in groups})
  return {
    f"{model}/{key}": np.array(
      [np.linalg.norm(np.asarray(v, np.float64)), np.sum(np.asarray(v, np.float64))]
    )
    for model, tree in named.items()
    for key, v in tree.items()
  }


def outputs(path: str) -> tuple[dict, dict]:
  """({quantity: smt_jax value}, {quantity: original value}) for every quantity of the fixture;
  gradient quantities are (L2 norm, sum) per tensor, grouped per loss."""
  from smt_jax.models import build_models, mem_size
  from smt_jax.objectives import METHODS

  sizes, teacher, rnn, ref = load(path)
  Tc, Tf = sizes["Tc"], sizes["Tf"]
  cfg = config(sizes, teacher, rnn, "smt")
  params = jax.tree.map(jnp.asarray, mapping.to_params(cfg, teacher, rnn))
  models = _jitted(build_models(cfg))
  ours, theirs = {}, {}

  def put(name, value, expected):
    ours[name], theirs[name] = np.asarray(value), np.asarray(expected)

  m = models.encode(params, jnp.asarray(ref["batch/enc_x"]))
  put("teacher memory", m, ref["out/teacher/memory"])
  x_dec = jnp.asarray(ref["batch/dec_x"])
  put(
    "teacher decoder logits",
    models.decode(params, m, x_dec[:, : Tf - 1]),
    ref["out/teacher/decode_logits"],
  )
  put(
    "teacher readout logits",
    models.decode(params, m, x_dec[:, :0])[:, 0],
    ref["out/teacher/readout_logits"],
  )
  put("rnn update", models.step(params, m, x_dec[:, 0]), ref["out/rnn/update"])
  put("rnn readout logits", models.read(params, m), ref["out/rnn/readout_logits"])

  def batch(name):
    return {"x": jnp.asarray(ref[f"batch/{name}_x"]), "y": jnp.asarray(ref[f"batch/{name}_y"])}

  def run(cfg, name, groups):
    loss_fn = lambda p: METHODS[cfg.method].loss(p, batch(name), jax.random.key(0), cfg)
    (_, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    return metrics, _grad_stats(cfg, grads, groups)

  # SMT: the original's one timestep t = Tc - 1 and its pieces.
  metrics, grads = run(cfg, "smt", ("encoder", "decoder", "updater"))
  for ours_name, name in (
    ("loss", "loss"),
    ("loss_dec", "loss_decoder"),
    ("loss_dec_first", "loss_decoder0"),
    ("loss_dyn", "loss_dyn"),
    ("loss_unif", "loss_unif"),
  ):
    put(f"smt {name}", metrics[ours_name], ref[f"out/smt/{name}"])
  x = batch("smt")["x"]
  m_now, m_next = models.encode(params, x[:, :Tc]), models.encode(params, x[:, 1 : Tc + 1])
  put("smt m_now", m_now, ref["out/smt/m_now"])
  put("smt m_next", m_next, ref["out/smt/m_next"])
  put("smt m_next_pred", models.step(params, m_now, x[:, Tc]), ref["out/smt/m_next_pred"])
  put("smt logits", models.decode(params, m_now, x[:, Tc : Tc + Tf - 1]), ref["out/smt/logits"])
  _put_grads(put, "smt", grads, ref, "teacher", "rnn")

  for detach in (True, False):
    case = f"dmt_detach_rnn_{detach}"
    dcfg = config(sizes, teacher, rnn, "dmt")
    dcfg.dmt.grad_steps = 0 if detach else 1  # detach_rnn=True: the whole rollout.
    metrics, grads = run(dcfg, "dmt", ("updater", "readout"))
    for ours_name, name in (
      ("loss", "loss"),
      ("loss_readout", "loss_readout"),
      ("loss_dyn", "loss_dyn"),
      ("loss_dec", "loss_decoder"),
      ("loss_unif", "loss_unif"),
    ):
      put(f"dmt(detach_rnn={detach}) {name}", metrics[ours_name], ref[f"out/{case}/{name}"])
    _put_grads(put, f"dmt(detach_rnn={detach})", grads, ref, "rnn", case=case)

  bcfg = config(sizes, teacher, rnn, "bptt")
  metrics, grads = run(bcfg, "bptt", ("updater", "readout"))
  put("bptt loss", metrics["loss"], ref["out/bptt/loss"])
  xb = batch("bptt")["x"]
  m, logits = jnp.zeros((xb.shape[0], mem_size(cfg))), []
  for t in range(xb.shape[1]):
    m = models.step(params, m, xb[:, t])
    logits.append(models.read(params, m))
  put("bptt logits", jnp.stack(logits, 1), ref["out/bptt/logits"])
  _put_grads(put, "bptt", grads, ref, "rnn")

  put("train_smt losses (0, 1, 2 updates)", train_losses(path), ref["out/train_smt/losses"])
  return ours, theirs


def train_losses(path: str, **optim) -> np.ndarray:
  """The SMT loss of the fixture's batch before and after each of two updates of smt_jax's
  train step with the fixture's optimizer settings (and `optim` overrides), as the original's
  train_smt.py step recorded them."""
  from smt_jax.objectives import METHODS
  from smt_jax.train.optimizer import make_optimizer
  from smt_jax.train.step import TrainState, make_train_step

  sizes, teacher, rnn, ref = load(path)
  o = sizes["optimizer"]
  cfg = config(sizes, teacher, rnn, "smt")
  cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.clip_norm = o["lr"], o["weight_decay"], o["clip"]
  cfg.optim.b1, cfg.optim.b2 = o["betas"]
  cfg.optim.warmup_steps = 0
  cfg.optim.update(optim)
  params = jax.tree.map(jnp.asarray, mapping.to_params(cfg, teacher, rnn))
  batch = {"x": jnp.asarray(ref["batch/smt_x"]), "y": jnp.asarray(ref["batch/smt_y"])}
  tx = make_optimizer(cfg)
  state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
  step = jax.jit(make_train_step(cfg, tx))
  loss = jax.jit(lambda p: METHODS["smt"].loss(p, batch, jax.random.key(0), cfg)[0])
  losses = []
  for _ in range(3):
    losses.append(loss(state.params))
    state, _ = step(state, batch, jax.random.key(0))
  return np.asarray(jnp.stack(losses))


def _jitted(models) -> types.SimpleNamespace:
  """encode, decode, step and read of `models`, each jitted: the comparison calls them with a
  few shapes each (the BPTT reference once per position), so compiling each beats dispatching
  its ops one by one."""
  names = ("encode", "decode", "step", "read")
  return types.SimpleNamespace(**{name: jax.jit(getattr(models, name)) for name in names})


def _put_grads(put, label, grads, ref, *models, case=None):
  case = case or label
  for key, stats in grads.items():
    if key.split("/")[0] in models:
      put(f"{label} grad {key}", stats, ref[f"grad/{case}/{key}"])


def differences(ours: dict, theirs: dict) -> dict:
  """{quantity: (largest |ours - theirs|, that relative to the quantity's scale)}.

  The scale is the largest |theirs| of the quantity (its own value for a scalar); for gradient
  stats (norm, sum) it is the tensor's gradient norm, so a sum near 0 is not divided by ~0.
  """
  out = {}
  for name in theirs:
    a, b = np.asarray(ours[name], np.float64), np.asarray(theirs[name], np.float64)
    if a.shape != b.shape:
      raise ValueError(f"{name}: smt_jax shape {a.shape} != original {b.shape}")
    diff = np.abs(a - b).max()
    scale = abs(b[0]) if " grad " in name else np.abs(b).max()
    out[name] = (float(diff), float(diff / scale) if scale > 0 else float(diff > 0) * np.inf)
  return out


def main(argv):
  ours, theirs = outputs(argv[1])
  diffs = differences(ours, theirs)
  grads = {k: v for k, v in diffs.items() if " grad " in k}
  width = max(map(len, diffs))
  for name, (abs_, rel) in diffs.items():
    if name not in grads:
      print(f"{name:{width}s}  max abs {abs_:9.2e}  max rel {rel:9.2e}")
  for label in sorted({k.split(" grad ")[0] for k in grads}):
    sel = {k: v for k, v in grads.items() if k.startswith(label + " grad ")}
    worst = max(sel, key=lambda k: sel[k][1])
    largest = max(theirs[k][0] for k in sel)
    print(
      f"{label + ' gradients (norm, sum per tensor)':{width}s}  max abs "
      f"{max(a for a, _ in sel.values()):9.2e}  max rel {sel[worst][1]:9.2e}  (at "
      f"{worst.split(' grad ')[1]}, gradient norm {theirs[worst][0]:.2e}; the loss's largest "
      f"tensor gradient norm is {largest:.2e})"
    )


if __name__ == "__main__":
  main(sys.argv)
