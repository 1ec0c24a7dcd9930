"""SMT vs BPTT gradient-path cost: speed, memory, sequential depth, credit assignment, and the
side-by-side table against the PyTorch original.

  python experiments/bench/run_all.py                 # CPU grid (`make bench`), < 15 minutes
  python experiments/bench/run_all.py --peer_src DIR --peer_python PY
                                                      # + the original (a checkout of
                                                      # akarshkumar0101/smt, a torch Python)
  python experiments/bench/run_all.py --device gpu    # paper-scale grid on a GPU / TPU
  python experiments/bench/run_all.py --quick         # a smoke run of every section
  python experiments/bench/run_all.py --report_only   # the report again from the last JSON
  python experiments/bench/run_all.py --sections side --rows '^(dmt|bptt)' --docs ''
                                                      # some side-by-side rows only

Prints tables, writes experiments/bench/results/bench_<device>.json and *.png, and (CPU or GPU)
the report docs/benchmarks.md. Timings are medians of jitted steps after a warm-up, each blocked
until ready; peak memory and FLOPs come from XLA's compiled memory/cost analyses; matmul FLOPs
are also counted from the jaxpr (XLA's cost analysis counts a scan body once).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench import common, credit, depth, report, side
from experiments.bench.common import (
  bench_step,
  environment,
  matmul_gflops,
  paper_config,
  reference_config,
  small_config,
  variant_config,
)
from smt_jax.models import init_params
from smt_jax.train.optimizer import make_optimizer
from smt_jax.train.step import TrainState, make_train_step

HERE = os.path.dirname(os.path.abspath(__file__))


def grid(device: str, quick: bool) -> dict:
  """What each section measures on this device."""
  if device == "cpu":
    g = dict(
      ref_cfg=reference_config,
      ref_batch=32,
      ref_T=128,
      smt_all_batch=4,
      stream_batch=8,
      n_dec=16,
      buckets=4,
      rounds=5,
      bptt_Ts=(32, 64),
      plain=dict(batch=32, T=128, d_model=128, depth=4, heads=4),
      sweep_cfg=small_config,
      sweep_batch=4,
      sweep_Ts=(64, 256, 1024, 2048),
      sweep_variants=("smt_all", "smt_all_stream", "dmt", "dmt_sg", "bptt", "bptt_remat"),
      repeats=5,
      sweep_repeats=3,
      max_seconds=15.0,
      max_peak_gib=4.0,
      credit_steps=100,
      credit_T=64,
      credit_batch=16,
      matmul_n=1024,
      matmul_dtype=jnp.float32,
    )
    if quick:
      g.update(
        bptt_Ts=(32,),
        sweep_Ts=(64, 128),
        repeats=2,
        sweep_repeats=2,
        credit_steps=5,
        smt_all_batch=2,
        stream_batch=2,
        rounds=2,
        ref_batch=4,
        plain=dict(batch=4, T=128, d_model=128, depth=4, heads=4),
        credit_T=48,
      )
  else:  # gpu / tpu: the paper's scale
    g = dict(
      ref_cfg=paper_config,
      ref_batch=128,
      ref_T=512,
      smt_all_batch=16,
      stream_batch=128,
      n_dec=64,
      buckets=4,
      rounds=3,
      bptt_Ts=(64, 256, 1024),
      plain=dict(batch=128, T=1024, d_model=256, depth=8, heads=8),
      sweep_cfg=paper_config,
      sweep_batch=128,
      sweep_Ts=(64, 128, 256, 512, 1024, 2048),
      sweep_variants=("smt_all", "smt_all_stream", "smt_n8", "dmt", "dmt_sg", "bptt", "bptt_remat"),
      repeats=10,
      sweep_repeats=5,
      max_seconds=60.0,
      max_peak_gib=None,
      credit_steps=1000,
      credit_T=256,
      credit_batch=32,
      matmul_n=8192,
      matmul_dtype=jnp.bfloat16,
    )
    if quick:
      g.update(
        sweep_Ts=(512,), bptt_Ts=(64,), repeats=3, sweep_repeats=2, credit_steps=20, rounds=2
      )
  return g


def log(*a):
  print(*a, flush=True)


def fmt_s(s):
  return (
    "skipped"
    if s is None or (isinstance(s, float) and math.isnan(s))
    else (f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s")
  )


def step_row(name, cfg, batch, g, **kw):
  """Times cfg's training step (common.bench_step) and adds its gradient path (depth.py) and the
  derived throughput figures."""
  t0 = time.time()
  r = bench_step(
    cfg,
    batch,
    repeats=kw.pop("repeats", g["repeats"]),
    max_seconds=g["max_seconds"],
    max_peak_bytes=None if g["max_peak_gib"] is None else g["max_peak_gib"] * 2**30,
    **kw,
  )
  T = cfg.data.T
  r.update(
    name=name,
    method=cfg.method,
    T=T,
    batch=batch,
    n_t=cfg.smt.n_t,
    Td=cfg.dmt.Td,
    k=cfg.dmt.k,
    remat=cfg.bptt.remat,
    Tc=cfg.model.teacher.Tc,
    Tf=cfg.model.teacher.Tf,
    starts_from=common.starts_from(cfg),
    memory_labels=common.memory_labels(cfg, batch),
    gradient_path_depth=depth.objective_depths(cfg)["gradient_path_depth"],
  )
  s = r["step_s"]
  if s and not math.isnan(s):
    r["tokens_per_s"] = batch * T / s
    r["labels_per_s"] = r["memory_labels"] / s
    r["achieved_gflops_xla"] = r.get("flops", float("nan")) / s / 1e9
    r["achieved_gflops_matmul"] = r["jaxpr_matmul_flops"] / s / 1e9
  log(
    f"  {name:<22} T={T:<5} B={batch:<4} step {fmt_s(s):>10}  peak "
    f"{r.get('peak_bytes', 0) / 2**20:8.0f} MiB  matmul {r['jaxpr_matmul_flops'] / 1e9:8.1f} "
    f"GFLOP  gradient path {r['gradient_path_depth']}  (compile {r['compile_s']:.0f} s, wall "
    f"{time.time() - t0:.0f} s)" + (f"  [{r['skipped']}]" if r.get("skipped") else "")
  )
  return r


def side_section(g, args) -> dict:
  """The side-by-side table (side.py): this project and, when given, the PyTorch original, in
  alternating rounds of this run."""
  peer, why_not = side.open_peer(args.peer_src, args.peer_python)
  log(f"  original: {why_not or peer.info}")
  try:
    rows = side.select_rows(side.reference_rows(g, g["ref_cfg"]), args.rows)
    matmul = lambda: matmul_gflops(g["matmul_n"], g["matmul_dtype"])
    out = side.side_section(rows, peer, args.rounds or g["rounds"], g["plain"], log, matmul)
  finally:
    if peer is not None:
      peer.close()
  out["peer_note"] = why_not or f"original timed from {args.peer_src} under {args.peer_python}"
  for r in out["rows"]:
    ratio = f"  x{r['ratio']:.2f} ({r['ratio_kind']})" if "ratio" in r else ""
    peer_s = f"  original {fmt_s(r['peer_step_s'])}" if "peer_step_s" in r else ""
    log(
      f"  {r['key']:<24} T={r['T']:<4} B={r['batch']:<3} step {fmt_s(r['step_s']):>8}{peer_s}"
      f"  labels/s {r['labels_per_s']:.0f}{ratio}"
    )
  return out


def sweep_section(g) -> list:
  rows = []
  for T in g["sweep_Ts"]:
    base = g["sweep_cfg"](T)
    for v in g["sweep_variants"]:
      cfg = variant_config(base, v)
      rows.append(step_row(v, cfg, g["sweep_batch"], g, repeats=g["sweep_repeats"]))
  return rows


DEPTH_VARIANTS = ("smt_all", "smt_n8", "dmt", "dmt_sg", "bptt", "bptt_remat")


def depth_section(g) -> list:
  """Sequential depth, gradient path (the updates a gradient crosses, measured on the backward
  pass) and forward+backward depth of each variant's objective (depth.objective_depths), and the
  sequential depth of its whole training step, per T."""
  rows = []
  for T in g["sweep_Ts"]:
    base = g["sweep_cfg"](T)
    for v in DEPTH_VARIANTS:
      cfg = variant_config(base, v)
      d = depth.objective_depths(cfg)
      with depth.mark_updater():  # A step built inside the block: its trace holds the marks.
        state, step_fn = common.training_step(cfg, 2)
        d["train_step_depth"] = depth.sequential_depth(step_fn, state, 0)
      rows.append(dict(variant=v, T=T, **d))
      log(
        f"  {v:<12} T={T:<5} sequential depth {d['forward_depth']:>5}  gradient path "
        f"{d['gradient_path_depth']:>5}  forward+backward {d['fwd_bwd_depth']:>5}  training step "
        f"{d['train_step_depth']:>5}"
      )
  return rows


CREDIT_CURVES = {  # curve name -> (variant, credit measure)
  "bptt": ("bptt", credit.bptt_credit),
  "smt": ("smt_n8", credit.smt_encoder_credit),
  "dmt": ("dmt", credit.dmt_credit),
  "dmt_sg": ("dmt_sg", credit.dmt_credit),
}


def credit_section(g) -> dict:
  """||d loss_t / d e_{t-k}|| vs k at init and after credit_steps updates of the training step
  (smt_jax.train.step.make_train_step with the run's optimizer) on a delayed copy: BPTT, SMT's
  encoder path (n_t = 8), and DMT through its rollout from m_empty (the studies' recipe, and with
  the per-step stop-gradient; its teacher is the untrained, frozen encoder)."""
  T, lag, vocab, B = g["credit_T"], 8, 16, g["credit_batch"]
  base = g["sweep_cfg"](T)
  base.data.vocab_size = vocab
  out = dict(T=T, lag=lag, vocab=vocab, batch=B, steps=g["credit_steps"], t=T - 1)
  probe = credit.delayed_copy_batch(jax.random.PRNGKey(123), B, T, vocab, lag)
  for name, (variant, measure_fn) in CREDIT_CURVES.items():
    cfg = variant_config(base, variant)
    cfg.train.num_steps = g["credit_steps"]
    cfg.optim.warmup_steps = min(cfg.optim.warmup_steps, g["credit_steps"] // 10)
    tx = make_optimizer(cfg)
    params = init_params(cfg, jax.random.PRNGKey(0))
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
    measure = jax.jit(lambda p, cfg=cfg, fn=measure_fn: fn(cfg, p, probe, T - 1))
    out[f"{name}_init"] = np.asarray(measure(params)).tolist()
    update = jax.jit(make_train_step(cfg, tx))

    t0 = time.time()
    losses = []
    for i in range(g["credit_steps"]):
      batch = credit.delayed_copy_batch(
        jax.random.fold_in(jax.random.PRNGKey(7), i), B, T, vocab, lag
      )
      state, m = update(state, batch, jax.random.fold_in(jax.random.PRNGKey(8), i))
      losses.append((float(m["loss"]), float(m.get("acc", m.get("acc_dec_first")))))
    out[f"{name}_trained"] = np.asarray(measure(state.params)).tolist()
    out[f"{name}_train_curve"] = losses
    log(
      f"  {name}: {g['credit_steps']} steps in {time.time() - t0:.0f} s, loss "
      f"{losses[0][0]:.3f} -> {losses[-1][0]:.3f}, acc {losses[-1][1]:.3f}"
    )
    for key in ("init", "trained"):
      v = out[f"{name}_{key}"]
      ks = [k for k in (0, 1, 2, 4, 8, 16, 31, 63) if k < len(v)]
      log(f"    {key:<8} " + "  ".join(f"k={k}: {v[k]:.3g}" for k in ks))
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument(
    "--device",
    default="auto",
    choices=("auto", "cpu", "gpu"),
    help="cpu: CPU-sized grid; gpu: paper scale on the accelerator; auto: by backend",
  )
  ap.add_argument("--quick", action="store_true", help="a tiny smoke run of every section")
  ap.add_argument("--out", default=os.path.join(HERE, "results"), help="JSON / PNG folder")
  ap.add_argument(
    "--docs",
    default=os.path.join(common.REPO, "docs", "benchmarks.md"),
    help="markdown report path ('' = none)",
  )
  ap.add_argument("--sections", default="env,side,sweep,depth,credit")
  ap.add_argument(
    "--peer_src",
    default="",
    help="checkout of akarshkumar0101/smt: time the PyTorch original side by side",
  )
  ap.add_argument(
    "--peer_python",
    default="",
    help="a Python with torch and x-transformers for the original (default $PEER_PYTHON)",
  )
  ap.add_argument("--rounds", type=int, default=0, help="alternating rounds (0 = by device)")
  ap.add_argument(
    "--rows", default="", help="side by side: only the rows whose key matches this regex"
  )
  ap.add_argument(
    "--sweep_Ts", default="", help="sweep and depth: these T only, e.g. 64,256 ('' = by device)"
  )
  ap.add_argument(
    "--sweep_variants",
    default="",
    help="sweep: these variants only, e.g. dmt,dmt_sg,bptt ('' = by device)",
  )
  ap.add_argument(
    "--report_only",
    action="store_true",
    help="re-derive the targets, plots and markdown from the run's JSON in --out; time nothing",
  )
  args = ap.parse_args(argv)
  device = args.device
  if device == "auto":
    device = "cpu" if jax.default_backend() == "cpu" else "gpu"
  name = f"bench_{device}{'_quick' if args.quick else ''}"
  if args.report_only:
    path = os.path.join(args.out, name + ".json")
    if not os.path.isfile(path):
      raise SystemExit(f"--report_only: no {path}; run the benchmark first (without --report_only)")
    with open(path) as f:
      res = json.load(f)
    write_reports(res, args, name)
    return
  g = grid(device, args.quick)
  if args.sweep_Ts:
    g["sweep_Ts"] = tuple(int(t) for t in args.sweep_Ts.split(","))
  if args.sweep_variants:
    g["sweep_variants"] = tuple(args.sweep_variants.split(","))
  sections = set(args.sections.split(","))
  os.makedirs(args.out, exist_ok=True)
  t_start = time.time()
  res = dict(
    command="python "
    + " ".join(
      [os.path.relpath(__file__, common.REPO)] + (argv if argv is not None else sys.argv[1:])
    ),
    device_mode=device,
    quick=args.quick,
    env=environment(),
    started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
  )
  log(f"[env] {res['env']['device']} ({res['env']['cpu']}), jax {res['env']['jax']}")
  res["matmul_gflops"] = matmul_gflops(g["matmul_n"], g["matmul_dtype"])
  res["matmul"] = dict(n=g["matmul_n"], dtype=jnp.dtype(g["matmul_dtype"]).name)
  log(f"[matmul] {g['matmul_n']}^3 {res['matmul']['dtype']}: {res['matmul_gflops']:.1f} GFLOP/s")
  if "side" in sections:
    log("[side by side]")
    res["side"] = side_section(g, args)
  if "sweep" in sections:
    log("[sweep]")
    res["sweep"] = sweep_section(g)
  if "depth" in sections:
    log("[depth]")
    res["depth"] = depth_section(g)
  if "credit" in sections:
    log("[credit]")
    res["credit"] = credit_section(g)
  # Matmul again at the end: the load on a shared machine drifts during the run.
  res["matmul_gflops_end"] = matmul_gflops(g["matmul_n"], g["matmul_dtype"])
  res["elapsed_s"] = time.time() - t_start
  log(f"[done] {res['elapsed_s']:.0f} s")
  write_reports(res, args, name)


def write_reports(res: dict, args, name: str) -> None:
  """Targets into `res`, then its JSON, plots, printed tables and (--docs) the markdown. The
  measurements are written first, so that a failing report step loses none of them."""
  path = os.path.join(args.out, name + ".json")
  for with_targets in (False, True):
    if with_targets:
      res["targets"] = report.targets(res)
    with open(path, "w") as f:
      json.dump(res, f, indent=1, default=float)
  pngs = report.plots(res, args.out, name)
  log(f"[report] wrote {args.out}/{name}.json and {len(pngs)} PNG")
  report.print_tables(res)
  if args.docs:
    report.write_markdown(res, args.docs, pngs)
    log(f"[docs] {args.docs}")


if __name__ == "__main__":
  main()
