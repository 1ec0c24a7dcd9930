"""Streaming inference: tokens/s and memory per stream of the RNN against a causal Transformer of
the same width with a KV cache, as the context grows.

  python experiments/bench/inference.py                       # CPU grid: contexts 1k..16k
  python experiments/bench/inference.py --contexts 1024,4096,16384,65536 --batches 1,8
  python experiments/bench/inference.py --quick               # a tiny smoke grid

The RNN is common.reference_config's (transformer-token updater, d 128, K 4, updater 4 /
readout 2 blocks). Each token it reads costs one updater step and one readout (`Models.step`,
`Models.read`) on a fixed-size memory (B, Z). The Transformer has the same width, heads and
vocabulary and as many blocks as the updater (no positional encoding: it changes no cost); each
token at context L attends over a cache of L keys and values per block, updated in place (the
cache is donated). Both sides produce logits for every token. Two ways to feed tokens:
  step   a jitted one-token call (generation): tokens/s = B / seconds per call
  chunk  a lax.scan over --chunk tokens in one call (reading a prompt): B * chunk / seconds
Memory per stream: the state one stream carries (RNN: Z floats; Transformer: 2 * blocks * L * d
floats of cache), and from XLA's compiled memory analysis the call's outputs (the new state,
which aliases the donated one, and the logits) plus its temporaries, divided by B: what a stream
costs beyond the shared parameters.

The two sides alternate in --rounds rounds (so a drifting load hits both); each number is the
median over rounds of the median call time in a round. Writes
experiments/bench/results/inference_<device>.json and .png and prints a table; names the device.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys

import jax
import jax.numpy as jnp

from experiments.bench import common
from smt_jax.models import build_models, init_params, mem_size

HERE = os.path.dirname(os.path.abspath(__file__))
SIDES = ("rnn", "transformer")
MODES = ("step", "chunk")


def rms(x):
  return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6)


def transformer_params(key, vocab: int, d: int, heads: int, blocks: int, mlp_ratio: int) -> dict:
  """Random float32 parameters of a pre-norm causal Transformer decoder."""
  ks = iter(jax.random.split(key, 2 + 6 * blocks))
  w = lambda *shape: jax.random.normal(next(ks), shape, jnp.float32) / math.sqrt(shape[0])
  layers = [
    dict(
      q=w(d, d), k=w(d, d), v=w(d, d), o=w(d, d), up=w(d, mlp_ratio * d), down=w(mlp_ratio * d, d)
    )
    for _ in range(blocks)
  ]
  return dict(embed=w(vocab, d), out=w(d, vocab), layers=layers, heads=heads)


def transformer_token(params: dict, cache: jax.Array, x: jax.Array, pos: jax.Array):
  """One token per stream at position `pos` (attends to cache positions 0..pos).

  cache: (blocks, 2, B, L, H, d / H) keys and values; x: (B,) int32. Returns (cache with pos
  written, logits (B, V))."""
  heads = params["heads"]
  h = params["embed"][x]
  batch, d = h.shape
  length = cache.shape[3]
  visible = jnp.arange(length) <= pos
  for i, p in enumerate(params["layers"]):
    a = rms(h)
    q, k, v = (jnp.reshape(a @ p[n], (batch, heads, d // heads)) for n in "qkv")
    kv = jnp.stack([k, v])[:, :, None]  # (2, B, 1, H, hd)
    cache = jax.lax.dynamic_update_slice(cache, kv[None], (i, 0, 0, pos, 0, 0))
    scores = jnp.einsum("bhd,blhd->bhl", q, cache[i, 0]) / math.sqrt(d // heads)
    weights = jax.nn.softmax(jnp.where(visible, scores, -jnp.inf), -1)
    h = h + jnp.einsum("bhl,blhd->bhd", weights, cache[i, 1]).reshape(batch, d) @ p["o"]
    h = h + jax.nn.gelu(rms(h) @ p["up"]) @ p["down"]
  return cache, rms(h) @ params["out"]


def sides(cfg, context: int, batch: int, chunk: int) -> dict:
  """{side: {mode: (jitted fn with the state donated, args builder, state bytes per stream)}}
  at `context` tokens."""
  models = build_models(cfg)
  rnn_params = init_params(cfg, jax.random.key(0))
  rnn_params = {g: rnn_params[g] for g in ("updater", "readout")}
  d, heads, blocks = cfg.model.d_model, cfg.model.num_heads, cfg.model.rnn.depth
  tf = transformer_params(
    jax.random.key(1), cfg.data.vocab_size, d, heads, blocks, cfg.model.mlp_ratio
  )
  tf_arrays = {k: v for k, v in tf.items() if k != "heads"}
  tf_fn = lambda arrays, *a: transformer_token({**arrays, "heads": heads}, *a)

  def rnn_token(p, m, x):
    m = models.step(p, m, x)
    return m, models.read(p, m)

  def rnn_chunk(p, m, xs):
    return jax.lax.scan(lambda m, x: rnn_token(p, m, x), m, xs)

  def tf_chunk(p, cache, xs, start):
    def body(cache, inputs):
      x, pos = inputs
      return tf_fn(p, cache, x, pos)

    return jax.lax.scan(body, cache, (xs, start + jnp.arange(xs.shape[0])))

  x = jnp.zeros((batch,), jnp.int32)
  xs = jnp.zeros((chunk, batch), jnp.int32)
  z = mem_size(cfg)
  m = lambda: jnp.zeros((batch, z), jnp.float32)
  cache_shape = (blocks, 2, batch, context, heads, d // heads)
  cache = lambda: jnp.zeros(cache_shape, jnp.float32)
  last = jnp.asarray(context - 1, jnp.int32)
  return {
    "rnn": {
      "step": (jax.jit(rnn_token, donate_argnums=1), lambda: (rnn_params, m(), x), z * 4),
      "chunk": (jax.jit(rnn_chunk, donate_argnums=1), lambda: (rnn_params, m(), xs), z * 4),
    },
    "transformer": {
      "step": (
        jax.jit(tf_fn, donate_argnums=1),
        lambda: (tf_arrays, cache(), x, last),
        2 * blocks * context * d * 4,
      ),
      "chunk": (
        jax.jit(tf_chunk, donate_argnums=1),
        lambda: (tf_arrays, cache(), xs, jnp.asarray(context - chunk, jnp.int32)),
        2 * blocks * context * d * 4,
      ),
    },
  }


def measure(cfg, context: int, batch: int, chunk: int, rounds: int, repeats: int) -> dict:
  """{side: {mode: {tokens_per_s, call_s (median of round medians), round_s, state_bytes,
  call_bytes_per_stream}}} at one (context, batch), the sides alternating in each round."""
  built = sides(cfg, context, batch, chunk)
  out = {side: {} for side in SIDES}
  runners = {}
  for side in SIDES:
    for mode in MODES:
      fn, make_args, state_bytes = built[side][mode]
      compiled = fn.lower(*make_args()).compile()
      stats = common.xla_stats(compiled)
      holder = {"args": make_args()}

      def call(compiled=compiled, holder=holder):
        state, logits = compiled(*holder["args"])
        args = list(holder["args"])
        args[1] = state  # The donated memory / cache goes back in.
        holder["args"] = tuple(args)
        return logits

      runners[side, mode] = call
      live = stats.get("output_size_in_bytes", 0) + stats.get("temp_size_in_bytes", 0)
      out[side][mode] = {
        "state_bytes": state_bytes,
        "call_bytes_per_stream": live / batch if "temp_size_in_bytes" in stats else None,
        "round_s": [],
      }
  for r in range(rounds):
    order = SIDES if r % 2 == 0 else SIDES[::-1]
    for side in order:
      for mode in MODES:
        times = common.time_calls(runners[side, mode], repeats, warmup=1)
        out[side][mode]["round_s"].append(statistics.median(times))
  for side in SIDES:
    for mode in MODES:
      row = out[side][mode]
      row["call_s"] = statistics.median(row["round_s"])
      row["tokens_per_s"] = batch * (chunk if mode == "chunk" else 1) / row["call_s"]
  return out


def run(args) -> dict:
  cfg = common.reference_config()
  if args.quick:
    cfg.model.d_model, cfg.model.num_heads, cfg.model.rnn.depth = 16, 2, 1
    cfg.model.rnn.readout_depth = cfg.model.teacher.decoder_depth = 1
  env = common.environment()
  contexts = [int(c) for c in args.contexts.split(",")]
  batches = [int(b) for b in args.batches.split(",")]
  res = {
    "command": "python experiments/bench/inference.py " + " ".join(args.argv),
    "env": env,
    "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
    "model": {
      "d_model": cfg.model.d_model,
      "num_heads": cfg.model.num_heads,
      "mem_tokens": cfg.model.mem_tokens,
      "Z": mem_size(cfg),
      "updater": f"{cfg.model.rnn.updater}, {cfg.model.rnn.depth} blocks",
      "readout_blocks": cfg.model.rnn.readout_depth,
      "transformer_blocks": cfg.model.rnn.depth,
      "vocab_size": cfg.data.vocab_size,
    },
    "chunk": args.chunk,
    "rounds": args.rounds,
    "rows": [],
  }
  print(f"[inference] {res['device']} ({env.get('cpu', '')}), jax {env.get('jax', '')}")
  for batch in batches:
    for context in contexts:
      r = measure(cfg, context, batch, args.chunk, args.rounds, args.repeats)
      res["rows"].append({"context": context, "batch": batch, **r})
      print(
        f"  B {batch:2d} L {context:6d}  "
        + "  ".join(
          f"{side} {mode} {r[side][mode]['tokens_per_s']:9.0f} tok/s "
          f"{r[side][mode]['state_bytes'] / 2**20:8.3f} MiB"
          for side in SIDES
          for mode in MODES
        ),
        flush=True,
      )
  return res


def markdown_table(res: dict) -> str:
  """The rows as a Markdown table: tokens/s of each side and mode, state and one-token call
  memory per stream."""
  head = "| B | context | " + " | ".join(f"{s} {m} tok/s" for s in SIDES for m in MODES)
  head += " | RNN state / stream | KV cache / stream | RNN step call / stream"
  head += " | Transformer step call / stream |"
  lines = [head, "|" + " ---: |" * (2 + len(SIDES) * len(MODES) + 4)]
  for r in res["rows"]:
    cells = [str(r["batch"]), str(r["context"])]
    cells += [f"{r[s][m]['tokens_per_s']:.0f}" for s in SIDES for m in MODES]
    cells += [f"{r[s]['step']['state_bytes'] / 2**10:.1f} KiB" for s in SIDES]
    cells += [f"{(r[s]['step']['call_bytes_per_stream'] or 0) / 2**10:.1f} KiB" for s in SIDES]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(res: dict, path: str) -> None:
  """Tokens/s and state memory per stream against the context, both sides, every batch size."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 3.6))
  for batch in sorted({r["batch"] for r in res["rows"]}):
    rows = [r for r in res["rows"] if r["batch"] == batch]
    ctx = [r["context"] for r in rows]
    for side, style in zip(SIDES, ("-", "--")):
      for mode, marker in zip(MODES, ("o", "s")):
        tps = [r[side][mode]["tokens_per_s"] for r in rows]
        ax_t.plot(ctx, tps, style, marker=marker, label=f"{side} {mode}, B={batch}")
      if batch == min(r["batch"] for r in res["rows"]):
        mem = [r[side]["step"]["state_bytes"] / 2**20 for r in rows]
        ax_m.plot(ctx, mem, style, marker="o", label=side)
  for ax, label in ((ax_t, "tokens / s"), (ax_m, "state per stream (MiB)")):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel(label)
    ax.legend(fontsize=6)
  fig.suptitle(f"RNN vs KV-cache Transformer, d {res['model']['d_model']}, {res['device']}")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
  argv = sys.argv[1:] if argv is None else argv
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--contexts", default="", help="comma-separated; default 1024,4096,16384")
  ap.add_argument("--batches", default="", help="streams per call, comma-separated; default 1,8")
  ap.add_argument("--chunk", type=int, default=0, help="tokens per scan call; default 64")
  ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median over them)")
  ap.add_argument("--repeats", type=int, default=5, help="timed calls per side and round")
  ap.add_argument("--quick", action="store_true", help="a tiny grid and model (a smoke run)")
  ap.add_argument("--out", default=os.path.join(HERE, "results"), help="JSON / PNG folder")
  args = ap.parse_args(argv)
  args.argv = argv
  args.contexts = args.contexts or ("64,128" if args.quick else "1024,4096,16384")
  args.batches = args.batches or ("1,2" if args.quick else "1,8")
  args.chunk = args.chunk or (8 if args.quick else 64)
  if args.quick:
    args.rounds, args.repeats = min(args.rounds, 2), min(args.repeats, 2)
  if min(int(c) for c in args.contexts.split(",")) < args.chunk:
    ap.error(f"--chunk {args.chunk} must be at most the shortest context")
  res = run(args)
  os.makedirs(args.out, exist_ok=True)
  name = f"inference_{jax.default_backend()}{'_quick' if args.quick else ''}"
  with open(os.path.join(args.out, name + ".json"), "w") as f:
    json.dump(res, f, indent=1, default=float)
  plot(res, os.path.join(args.out, name + ".png"))
  print(markdown_table(res))
  print(f"[inference] wrote {args.out}/{name}.json and .png")
  return res


if __name__ == "__main__":
  main()
