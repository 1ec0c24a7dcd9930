"""Where a side-by-side row's step spends its time: op time by kind, from a jax.profiler trace.

  python experiments/bench/op_profile.py               # the stream-SMT row at the CPU grid
  python experiments/bench/op_profile.py --rows 'smt_all|dmt_32' --steps 3

Each XLA op of the compiled step is sorted by what its HLO computes: `matmul` (a dot or
convolution, alone or inside a fusion, or a GEMM library call), `layout` (copies, transposes,
concatenations, pads, slices, broadcasts and reshapes only) or `other` (elementwise math and
reductions). The trace's op times are summed per kind over every thread (CPU) or device stream;
their shares of that sum, times the median step, split the step's wall-clock. With the matmul
rate measured in the same run this bounds the achieved FLOP/s: even if every matmul op ran at
that rate, the other ops' time stays. Prints a table, writes results/op_profile_<device>.json.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import statistics
import tempfile

import jax

from experiments.bench import common, side
from experiments.bench.run_all import HERE, grid

LAYOUT_OPS = {
  "parameter",
  "constant",
  "copy",
  "transpose",
  "concatenate",
  "pad",
  "slice",
  "dynamic-slice",
  "dynamic-update-slice",
  "bitcast",
  "broadcast",
  "reshape",
  "iota",
  "tuple",
  "get-tuple-element",
}
MATMUL_OPS = {"dot", "convolution", "gemm"}  # gemm: a GEMM library custom call.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\s([a-z][\w\-]*)\((.*)$")
_COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)")
_GEMM_TARGET = re.compile(r"custom_call_target=\"[^\"]*(gemm|matmul|cublas)", re.IGNORECASE)


def op_kinds(hlo_text: str) -> dict[str, str]:
  """{instruction name: "matmul" | "layout" | "other"} for every instruction of an HLO module's
  text (`compiled.as_text()`), looking through the computations each one calls."""
  computations: dict[str, list[tuple[str, str, str]]] = {}
  current = None
  for line in hlo_text.splitlines():
    inst = _INSTRUCTION.match(line)
    if inst and current is not None:
      computations[current].append(inst.groups())
    elif (comp := _COMPUTATION.match(line)) and "=" not in line.split("{")[0]:
      current = comp.group(1)
      computations[current] = []

  def ops_of(opcode: str, rest: str, seen: set) -> set:
    """An instruction's opcode ("gemm" for a GEMM library call) and the opcodes of the
    computations it calls, transitively, each computation read once."""
    out = {"gemm" if opcode == "custom-call" and _GEMM_TARGET.search(rest) else opcode}
    for callee in _CALLS.findall(rest):
      if callee in computations and callee not in seen:
        seen.add(callee)
        for _, op, callee_rest in computations[callee]:
          out |= ops_of(op, callee_rest, seen)
    return out

  kinds = {}
  for insts in computations.values():
    for name, opcode, rest in insts:
      ops = ops_of(opcode, rest, set())
      if ops & MATMUL_OPS:
        kinds[name] = "matmul"
      elif ops <= LAYOUT_OPS | {"fusion"}:
        kinds[name] = "layout"
      else:
        kinds[name] = "other"
  return kinds


def op_times(trace_dir: str) -> collections.Counter:
  """{event name: summed duration in seconds} of the XLA op events of a jax.profiler trace: CPU
  threads running XLA ops, or device streams."""
  from jax.profiler import ProfileData

  (path,) = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
  times = collections.Counter()
  for plane in ProfileData.from_file(path).planes:
    on_device = plane.name.startswith("/device:")
    for line in plane.lines:
      if on_device or line.name.startswith("tf_XLA"):
        for event in line.events:
          times[event.name] += event.duration_ns * 1e-9
  return times


def time_by_kind(kinds: dict[str, str], times: collections.Counter) -> dict[str, float]:
  """Seconds per kind, summing the events that name an instruction of `kinds`."""
  out = {"matmul": 0.0, "layout": 0.0, "other": 0.0}
  for name, seconds in times.items():
    if name in kinds:
      out[kinds[name]] += seconds
  return out


def profile_row(prepared: side.Prepared, steps: int) -> dict:
  """Op time by kind over `steps` calls of a prepared row, and its median step."""
  kinds = op_kinds(prepared.compiled.as_text())
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        jax.block_until_ready(prepared.call())
    by_kind = time_by_kind(kinds, op_times(trace_dir))
  step_s = statistics.median(prepared.time(steps))
  total = sum(by_kind.values())
  return dict(step_s=step_s, op_s=by_kind, share={k: v / total for k, v in by_kind.items()})


def flop_bound(flops: float, step_s: float, share: dict, matmul_gflops: float) -> float:
  """Achieved GFLOP/s if the matmul ops ran at `matmul_gflops` and the others took their share
  of the measured step: flops / (flops / rate + (1 - matmul share) * step)."""
  rest = (1 - share["matmul"]) * step_s
  return flops / (flops / (matmul_gflops * 1e9) + rest) / 1e9


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--rows", default="^smt_all_stream$", help="side-by-side row keys (regex)")
  ap.add_argument("--steps", type=int, default=3, help="profiled (and then timed) steps")
  ap.add_argument("--out", default=os.path.join(HERE, "results"), help="JSON folder")
  args = ap.parse_args(argv)
  device = "cpu" if jax.default_backend() == "cpu" else "gpu"
  g = grid(device, quick=False)
  rows = side.select_rows(side.reference_rows(g, g["ref_cfg"]), args.rows)
  out = dict(device=common.environment()["device"], rows=[])
  for row in rows:
    prepared = side.Prepared(row, g["plain"])
    r = profile_row(prepared, args.steps)
    rate = common.matmul_gflops(g["matmul_n"], g["matmul_dtype"])
    flops = prepared.stats.get("flops", float("nan"))
    r.update(
      key=row.key,
      flops=flops,
      achieved_gflops=flops / r["step_s"] / 1e9,
      matmul_gflops=rate,
      bound_gflops=flop_bound(flops, r["step_s"], r["share"], rate),
    )
    out["rows"].append(r)
    print(
      f"{row.key}: step {r['step_s']:.2f} s; op time matmul {r['share']['matmul']:.0%}, layout "
      f"{r['share']['layout']:.0%}, other {r['share']['other']:.0%}; achieved "
      f"{r['achieved_gflops']:.1f} GFLOP/s = {r['achieved_gflops'] / rate:.0%} of the matmul "
      f"rate {rate:.1f}; with every matmul op at that rate: {r['bound_gflops']:.1f} GFLOP/s = "
      f"{r['bound_gflops'] / rate:.0%}",
      flush=True,
    )
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, f"op_profile_{device}.json"), "w") as f:
    json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
  main()
