"""Tables, targets, plots and the markdown report of run_all.py's results dict."""

from __future__ import annotations

import math
import os

import numpy as np

VARIANT_LABEL = {
  "smt_all": "SMT, all timesteps",
  "smt_all_stream": "SMT, all timesteps, streaming encoder",
  "smt_n8": "SMT, n_t = 8",
  "smt_n1": "SMT, n_t = 1",
  "dmt": "DMT as the studies run it (from m_empty, gradients through all T updates)",
  "dmt_sg": "DMT, per-step stop-gradient (from m_empty)",
  "dmt_32": "DMT, Td 32, k 4, per-step stop-gradient",
  "dmt_32_bp": "DMT, Td 32, k 4, gradients through the rollout",
  "bptt": "BPTT",
  "bptt_remat": "BPTT + remat",
}


def _save(fig, out_dir: str, filename: str) -> str:
  """Writes `fig` to out_dir/filename (PNG), closes it, returns the path."""
  import matplotlib.pyplot as plt  # Local, like the caller's: plots are optional.

  fig.tight_layout()
  path = os.path.join(out_dir, filename)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _nan(x):
  return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_s(s):
  if _nan(s):
    return "—"
  return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def fmt_b(b):
  return "—" if _nan(b) else f"{b / 2**20:.0f} MiB" if b < 2**30 else f"{b / 2**30:.2f} GiB"


def _rounds_matmul(res) -> float | None:
  """The median matmul rate of the side-by-side rounds (None when they timed none)."""
  rate = res.get("side", {}).get("matmul_gflops")
  return None if _nan(rate) else float(rate)


def _matmul(res):
  """The matmul rate rows are judged against: the median of the side-by-side rounds (measured
  between the rows, under their load), else the mean of the run's start and end."""
  rounds = _rounds_matmul(res)
  if rounds is not None:
    return rounds
  vals = [v for v in (res.get("matmul_gflops"), res.get("matmul_gflops_end")) if v]
  return float(np.mean(vals)) if vals else float("nan")


def path_text(rows: list[dict]) -> str:
  """The gradient path (updates a gradient crosses) of rows of one variant at several T: "T"
  when it equals T at every T, the number when it is the same everywhere, else the list."""
  paths = [r.get("gradient_path_depth") for r in rows]
  if any(p is None for p in paths):
    return "—"
  if len(rows) > 1 and all(p == r["T"] for p, r in zip(paths, rows)):
    return "T"
  return str(paths[0]) if len(set(paths)) == 1 else ", ".join(map(str, paths))


def _side_rows(res) -> dict:
  return {r["key"]: r for r in res.get("side", {}).get("rows", [])}


def flops_per_label(row: dict) -> float:
  """XLA's FLOPs of a side-by-side row's step per memory label (NaN where either is missing)."""
  labels = row.get("memory_labels")
  return row["flops"] / labels if labels and "flops" in row else float("nan")


def decoded(row: dict) -> int:
  """Memories an all-timesteps SMT row decodes per step: m_-1 .. m_T-1, or n_dec of them."""
  return row["batch"] * (row.get("n_dec") or row["T"] + 1)


def decoder_flops(all_decoded: dict, subset: dict) -> float:
  """FLOPs per decoded memory: the all-decoded and the n_dec stream-SMT rows (same batch and T)
  differ only in how many memories the decoder reads."""
  return (all_decoded["flops"] - subset["flops"]) / (decoded(all_decoded) - decoded(subset))


def flop_bound_note(window: dict, stream: dict, subset: dict | None) -> str:
  """How far stream-SMT's labels/s can pass window-SMT's by FLOPs alone: the ratio of their
  FLOPs per label, and (given the n_dec row) the ratio with only the decoder left to pay."""
  w, s = flops_per_label(window), flops_per_label(stream)
  if _nan(w) or _nan(s):
    return ""
  note = f"; XLA FLOPs per label {w / 1e6:.0f} vs {s / 1e6:.0f} M: {w / s:.2f}x at equal FLOP/s"
  if subset and subset["batch"] == stream["batch"] and subset["T"] == stream["T"]:
    per_label = decoder_flops(stream, subset) * decoded(stream) / stream["memory_labels"]
    note += (
      f"; the decoder alone costs {per_label / 1e6:.0f} M per label, so with the encoder and "
      f"updater free {w / per_label:.2f}x"
    )
  return note


def targets(res) -> list[dict]:
  """The benchmark's targets, each {name, value, threshold, ratio, met, note}; ratios
  against the original only when it was timed in this run."""
  out = []
  rows = _side_rows(res)

  def add(name, value, threshold, met, note):
    out.append(dict(name=name, value=value, threshold=threshold, met=bool(met), note=note))

  window = rows.get("smt_all_window")
  for key in ("smt_all_stream", "smt_all_stream_dec"):  # All memories decoded, or n_dec of them.
    r = rows.get(key)
    if not r:
      continue
    name = (
      f"Stream-SMT, {r.get('n_dec')} decoded per sequence"
      if r.get("n_dec")
      else "Stream-SMT all timesteps"
    )
    if "ratio" in r:
      add(
        f"{name}: >= 10x the original's memory labels/s",
        r["ratio"],
        10.0,
        r["ratio"] >= 10,
        f"{r['labels_per_s']:.0f} labels/s (B {r['batch']}, T {r['T']}) vs the original's "
        f"{r['peer_labels_per_s']:.0f}/s (one label per sequence), same run",
      )
    if window:
      ratio = r["labels_per_s"] / window["labels_per_s"]
      add(
        f"{name}: >= 4x window-SMT's memory labels/s",
        ratio,
        4.0,
        ratio >= 4,
        f"{r['labels_per_s']:.0f} vs {window['labels_per_s']:.0f} labels/s, same run"
        + flop_bound_note(
          window, r, rows.get("smt_all_stream_dec") if not r.get("n_dec") else None
        ),
      )
  like = (
    ("dmt_32", "DMT (Td 32, k 4, per-step stop-gradient)"),
    ("dmt_32_bp", "DMT (Td 32, k 4, gradients through the rollout)"),
    ("bptt_T64", "BPTT (T 64)"),
  )
  for key, name in like:
    for k in dict.fromkeys((key, key.replace("_T", "_remat_T"))):
      r = rows.get(k)
      if r and "ratio" in r:
        add(
          f"{name}{' + remat' if 'remat' in k else ''}, like for like: >= 2x the original",
          r["ratio"],
          2.0,
          r["ratio"] >= 2,
          f"project {fmt_s(r['step_s'])} vs original {fmt_s(r['peer_step_s'])} (medians of "
          f"{res['side']['rounds']} alternating rounds)",
        )
  mm = _matmul(res)
  for key in ("smt_all_stream", "smt_all_window"):
    r = rows.get(key)
    if r and not _nan(r.get("achieved_gflops_xla")):
      a = r["achieved_gflops_xla"]
      add(
        f"{r['label']}: achieved FLOP/s >= 50% of matmul",
        a / mm,
        0.5,
        a / mm >= 0.5,
        f"{a:.1f} GFLOP/s (XLA cost analysis / median step) vs {mm:.1f} GFLOP/s matmul"
        + (" (median of the rounds)" if _rounds_matmul(res) is not None else ""),
      )
  sweep = res.get("sweep", [])
  dep = res.get("depth", [])
  for variant in ("smt_all", "smt_all_stream"):
    smt = [(r["T"], r["step_s"]) for r in sweep if r["name"] == variant and not _nan(r["step_s"])]
    if len(smt) < 3:
      continue
    Ts, ss = np.array([t for t, _ in smt], float), np.array([s for _, s in smt])
    hi = Ts >= 256 if (Ts >= 256).sum() >= 2 else np.ones_like(Ts, bool)
    slope = float(np.polyfit(np.log(Ts[hi]), np.log(ss[hi]), 1)[0])
    smt_d = sorted({d["forward_depth"] for d in dep if d["variant"].startswith("smt")})
    bptt_ok = all(d["forward_depth"] == d["T"] for d in dep if d["variant"] == "bptt")
    add(
      f"{VARIANT_LABEL[variant]}: time linear in T, depth 1; BPTT depth = T",
      slope,
      1.0,
      abs(slope - 1) <= 0.25 and smt_d in ([1], []) and bptt_ok,
      "log-log slope of the step time over T = "
      f"{', '.join(str(int(t)) for t in Ts[hi])}"
      f": {slope:.2f}; SMT depths {smt_d}; BPTT depth == T at every T: {bptt_ok}",
    )
  return out


def print_tables(res):
  side = res.get("side")
  print(f"\nmatmul {_matmul(res):.1f} GFLOP/s")
  if side:
    print(f"side by side, {side['rounds']} alternating rounds; {side['peer_note']}")
    print(
      f"{'row':<26}{'T':>5}{'B':>5}{'project':>10}{'original':>10}{'ratio':>8}{'peak mem':>11}"
      f"{'GFLOP/s':>9}{'labels/s':>10}"
    )
    for r in side["rows"]:
      print(
        f"{r['key']:<26}{r['T']:>5}{r['batch']:>5}{fmt_s(r['step_s']):>10}"
        f"{fmt_s(r.get('peer_step_s')):>10}{r.get('ratio', float('nan')):>8.2f}"
        f"{fmt_b(r.get('peak_bytes')):>11}{r.get('achieved_gflops_xla', float('nan')):>9.1f}"
        f"{r.get('labels_per_s', float('nan')):>10.0f}"
      )
  for t in res.get("targets", []):
    print(f"[{'MET' if t['met'] else 'MISSED'}] {t['name']}: {t['note']}")


def plots(res, out_dir, name) -> list[str]:
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:  # pragma: no cover
    return []
  paths = []
  sweep = res.get("sweep", [])
  if sweep:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for v in dict.fromkeys(r["name"] for r in sweep):
      rows = [r for r in sweep if r["name"] == v]
      Ts = [r["T"] for r in rows]
      axes[0].plot(Ts, [r["step_s"] for r in rows], "o-", label=VARIANT_LABEL.get(v, v))
      axes[1].plot(
        Ts, [r.get("peak_bytes", np.nan) / 2**20 for r in rows], "o-", label=VARIANT_LABEL.get(v, v)
      )
    for ax, yl in zip(axes, ("train step (s, median)", "XLA peak memory (MiB)")):
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      ax.set_xlabel("sequence length T")
      ax.set_ylabel(yl)
      ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{res['env']['device']}: step time and memory vs T (sweep config)")
    paths.append(_save(fig, out_dir, f"{name}_sweep.png"))
  dep = res.get("depth", [])
  if dep:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for v in dict.fromkeys(d["variant"] for d in dep):
      rows = [d for d in dep if d["variant"] == v]
      ax.plot(
        [d["T"] for d in rows],
        [max(d["forward_depth"], 0.8) for d in rows],
        "o-",
        label=f"{VARIANT_LABEL.get(v, v)}",
      )
      ax.plot(
        [d["T"] for d in rows],
        [max(d["gradient_path_depth"], 0.8) for d in rows],
        "x:",
        color=ax.lines[-1].get_color(),
      )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("updater applications in a chain")
    ax.set_title("sequential depth (o) / gradient path (x)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out_dir, f"{name}_depth.png"))
  cr = res.get("credit")
  if cr:
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, key in enumerate(CREDIT_KEYS):
      style = f"C{i // 2}{'-' if key.endswith('trained') else '--'}"
      if key in cr:
        v = np.asarray(cr[key])
        ax.plot(np.arange(len(v)), np.maximum(v, 1e-12), style, label=key.replace("_", ", "))
    ax.axvline(cr["lag"], color="gray", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("distance k")
    ax.set_ylabel("|| d loss_t / d e_{t-k} ||")
    ax.set_title(f"credit assignment (delayed copy, lag {cr['lag']}, {cr['steps']} steps)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out_dir, f"{name}_credit.png"))
  return paths


CREDIT_KEYS = tuple(
  f"{m}_{when}" for m in ("bptt", "smt", "dmt", "dmt_sg") for when in ("init", "trained")
)
SMALL_SWEEP = (
  "d 64, K 2, encoder 2 / decoder 1 / updater 2 / readout 1, Tc 32, Tf 8, vocab 256, float32"
)
NOTES_MARKER = "<!-- notes: hand-written below; kept when this report is regenerated -->"


def hand_written_notes(path: str) -> str:
  """The text after NOTES_MARKER in the report at `path` ("" when there is none)."""
  if not os.path.exists(path):
    return ""
  return open(path).read().partition(NOTES_MARKER)[2].strip("\n")


def write_markdown(res, path, pngs):
  """The docs/benchmarks.md report of one run."""
  env = res["env"]
  rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(path)))
  lines = [
    "# Benchmarks: SMT vs BPTT gradient-path cost",
    "",
    "_Generated by `experiments/bench/run_all.py`; edit the script, not this file. "
    "Prose after the notes marker is hand-written and kept when the report is regenerated._",
    "",
    f"- command: `{res['command']}` (`make bench`)"
    + (" — QUICK smoke run" if res["quick"] else ""),
    f"- started {res['started']}, took {res['elapsed_s'] / 60:.1f} min",
    f"- device: {env['device']} ({env['cpu']}, {env['cpu_count']} cores, affinity "
    f"{env['affinity']}); backend {env['backend']}"
    + (
      f"; load average {', '.join(f'{x:.1f}' for x in env['loadavg'])} (1, 5, 15 min) at the start"
      if "loadavg" in env
      else ""
    ),
    f"- versions: python {env['python']}, jax {env['jax']}, jaxlib {env['jaxlib']}, flax "
    f"{env['flax']}, optax {env['optax']}, numpy {env['numpy']}; commit {env['commit']}; "
    f"XLA_FLAGS='{env['xla_flags']}'",
    f"- matmul ({res['matmul']['n']}^3, {res['matmul']['dtype']}), same run: "
    f"{res['matmul_gflops']:.1f} GFLOP/s at the start, {res['matmul_gflops_end']:.1f} at the end"
    + (
      f", median {_rounds_matmul(res):.1f} over the side-by-side rounds (what the "
      "FLOP/s targets use)"
      if _rounds_matmul(res) is not None
      else ""
    ),
  ]
  lines.append(
    "- the machine is shared: absolute times drift with its load; ratios come from "
    "alternating rounds of this one run"
  )
  lines += [
    "",
    "**What runs.** Every project row times and traces the training step that "
    "`experiments/run.py` runs (`smt_jax.train.loop.fresh_start`: AdamW with global-norm "
    "clipping on the method's trainable groups, the batch sampled inside the step). "
    '"Gradient path" is the longest chain of updater applications that the step\'s gradient '
    "crosses, measured on the backward pass of the objective (`experiments/bench/depth.py`). "
    "SMT's is one updater application. DMT as the studies run it (the DMT stage of "
    "`experiments/configs`: from m_empty through all T tokens, gradients through the rollout, "
    "dense targets: the encoder's memory at every step) has a gradient path of T updates, "
    "as long as BPTT's: what differs from BPTT is the dense targets, not the path length. The "
    "per-step stop-gradient DMT (gradient path 1) is a second row; it does not learn to store "
    "from x[0] (docs/results.md).",
    "",
  ]
  if res.get("targets"):
    lines += [
      "## Targets",
      "",
      "| target | result | value | detail |",
      "|---|---|---|---|",
    ]
    for t in res["targets"]:
      lines.append(
        f"| {t['name']} | **{'met' if t['met'] else 'missed'}** | {t['value']:.2f} | {t['note']} |"
      )
    lines.append("")
  side = res.get("side")
  if side:
    peer = side.get("peer") or {}
    lines += [
      "## Side by side with the PyTorch original",
      "",
      "d_model 128, 4 heads, K 4 (Z 512), encoder 4 / decoder 2 / updater 4 / readout 2, "
      "vocab 256, Tc 64, Tf 32, float32."
      if res["device_mode"] == "cpu"
      else "Paper scale: d_model 256, 8 heads, K 16 (Z 4096), encoder 8 / decoder 4 / updater 8 / "
      "readout 4, Tc 256, Tf 64, bf16.",
      "",
      f"{side['rounds']} alternating rounds in this run (the side that goes first alternates); "
      f"medians over the rounds. {side['peer_note']}"
      + (f" (torch {peer.get('torch')}, {peer.get('threads')} threads)." if peer else "."),
      "Ratio: for step rows the original's step time / the project's; for SMT all-timestep rows "
      "the project's memory labels per second / the original's (one label per sequence).",
      "",
      "| row | T | B | from | gradient path | project | original | ratio | what differs | peak "
      "memory | XLA GFLOP | jaxpr matmul GFLOP | achieved GFLOP/s | memory labels/s |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in side["rows"]:
      ratio = r.get("ratio")
      lines.append(
        f"| {r['label']} | {r['T']} | {r['batch']} | {r.get('starts_from', '—')} | "
        f"{path_text([r])} | {fmt_s(r['step_s'])} | "
        f"{fmt_s(r.get('peer_step_s'))} | {'—' if ratio is None else f'{ratio:.2f}x'} | "
        f"{r['differs']} | {fmt_b(r.get('peak_bytes'))} | "
        f"{r.get('flops', float('nan')) / 1e9:.1f} | "
        f"{r.get('jaxpr_matmul_flops', float('nan')) / 1e9:.1f} | "
        f"{r.get('achieved_gflops_xla', float('nan')):.1f} | {r['labels_per_s']:.0f} |"
      )
    lines += [
      "",
      "XLA's cost analysis counts a `scan` body once, so its FLOPs undercount DMT and "
      "BPTT; the jaxpr matmul column multiplies by the trip count. Achieved GFLOP/s uses "
      "XLA's count (exact for SMT, which has no scan).",
      "",
    ]
  sweep = res.get("sweep")
  if sweep:
    Ts = sorted({r["T"] for r in sweep})
    names = list(dict.fromkeys(r["name"] for r in sweep))
    r0 = sweep[0]
    lines += [
      "## Step time and peak memory vs T",
      "",
      f"Sweep config: {SMALL_SWEEP if res['device_mode'] == 'cpu' else 'the paper config above'}, "
      f"batch {r0['batch']}. Cells: median step / XLA peak memory. '—' = compiled but not "
      "run (peak above the CPU limit).",
      "",
      "| variant | from | gradient path | " + " | ".join(f"T {t}" for t in Ts) + " |",
      "|---|---|---|" + "---|" * len(Ts),
    ]
    for n in names:
      cells = []
      for t in Ts:
        r = next((r for r in sweep if r["name"] == n and r["T"] == t), None)
        cells.append("" if r is None else f"{fmt_s(r['step_s'])} / {fmt_b(r.get('peak_bytes'))}")
      rows = sorted((r for r in sweep if r["name"] == n), key=lambda r: r["T"])
      start = rows[0].get("starts_from", "—")
      lead = f"| {VARIANT_LABEL.get(n, n)} | {start} | {path_text(rows)} | "
      lines.append(lead + " | ".join(cells) + " |")
    lines.append("")
  dep = res.get("depth")
  if dep:
    Ts = sorted({d["T"] for d in dep})
    lines += [
      "## Sequential depth",
      "",
      "Longest chain of dependent updater applications, found by a max-plus pass over the "
      "jaxpr (`experiments/bench/depth.py`): sequential depth of the forward loss / "
      "gradient path (the chain of the backward pass that carries the gradient) / the loss "
      "and its gradient / the whole training step of `experiments/run.py`.",
      "",
      "| variant | " + " | ".join(f"T {t}" for t in Ts) + " |",
      "|---|" + "---|" * len(Ts),
    ]
    for v in dict.fromkeys(d["variant"] for d in dep):
      cells = [
        next(
          (
            f"{d['forward_depth']} / {d['gradient_path_depth']} / {d['fwd_bwd_depth']}"
            + (f" / {d['train_step_depth']}" if "train_step_depth" in d else "")
            for d in dep
            if d["variant"] == v and d["T"] == t
          ),
          "",
        )
        for t in Ts
      ]
      lines.append(f"| {VARIANT_LABEL.get(v, v)} | " + " | ".join(cells) + " |")
    lines.append("")
  cr = res.get("credit")
  if cr:
    ks = [k for k in (0, 1, 2, 4, 8, 16, 24, 31, 48, 63, 127, 255) if k <= cr["t"]]
    lines += [
      "## Credit assignment",
      "",
      f"Mean per-example ||d loss_t / d e_(t-k)|| at t = {cr['t']} (a delayed-copy task, "
      f"y_t = x_(t-{cr['lag']}), vocab {cr['vocab']}, T {cr['T']}, sweep config; "
      f"{cr['steps']} steps of each method's training update; SMT with n_t = 8). e is the "
      "embedding the model reads: the updater's token embedding for BPTT and DMT, the "
      "encoder's for SMT (whose gradient path crosses one encoder and one decoder; beyond Tc "
      "it is exactly 0). DMT's loss_t is the squared error of its memory rolled from m_empty "
      "against the encoder's memory of x[0..t] (its dense target); its teacher is the "
      "untrained encoder, frozen, so the DMT curves show how far its gradient reaches, not a "
      "trained model.",
      "",
      "| curve | " + " | ".join(f"k {k}" for k in ks) + " | final train loss / acc |",
      "|---|" + "---|" * (len(ks) + 1),
    ]
    for key in CREDIT_KEYS:
      if key in cr:
        v = cr[key]
        curve = cr.get(key.rsplit("_", 1)[0] + "_train_curve")
        last = (
          f"{curve[-1][0]:.3f} / {curve[-1][1]:.3f}" if key.endswith("trained") and curve else ""
        )
        lines.append(
          f"| {key} | "
          + " | ".join(f"{v[k]:.3g}" if k < len(v) else "0 (outside Tc)" for k in ks)
          + f" | {last} |"
        )
    lines.append("")
  if pngs:
    lines += ["## Plots", ""] + [f"![{os.path.basename(p)}]({rel(p)})" for p in pngs] + [""]
  lines += [NOTES_MARKER, hand_written_notes(path)]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
