"""Where a stage's update time goes: the updates/s of one stage of a config, as configured and
with one setting changed at a time, measured one after another in rounds on this machine.

  python experiments/bench/stage_cost.py                          # mnist.py's SMT stage
  python experiments/bench/stage_cost.py --config mnist --stage smt \
    --variant model.teacher.Tf=4 --variant smt.n_dec=8 --rounds 3 --seconds 10

Each variant is its stage config with the listed fields set (`KEY=VALUE`, VALUE a Python
literal; several fields of one variant separated by commas); `--reference STAGE` adds another
stage of the same config (BPTT by default) as the yardstick. Every variant is compiled once, then
timed for `--seconds` per round, the rounds alternating the variants so that drifting load falls
on all of them; the table gives each one's median updates/s and its time per update relative to
the stage as configured. `--config NAME[:ARG]` is experiments/configs/NAME.py's get_config(ARG).
Writes results/stage_cost_<backend>_<config>_<stage>[_<name>].json.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import pathlib
import re
import statistics
import time

import jax

from experiments.bench import rates
from experiments.bench.common import environment
from experiments.repro import runner
from smt_jax.train.loop import fresh_start

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_VARIANTS = (
  "model.teacher.Tf=4",
  "smt.n_dec=8",
  "model.rnn.depth=1",
  "model.teacher.encoder_depth=1",
)


def parse_variant(text: str) -> dict:
  """'a.b=1,c=2.0' -> {'a.b': 1, 'c': 2.0}; the empty string is the stage as configured."""
  out = {}
  for item in filter(None, text.split(",")):
    key, sep, value = item.partition("=")
    if not sep:
      raise SystemExit(f"--variant {text!r}: each field is KEY=VALUE, got {item!r}")
    out[key.strip()] = ast.literal_eval(value.strip())
  return out


def variant_config(cfg, stage: str, fields: dict):
  """The run config of `stage` with `fields` set (dotted keys); an unknown key is an error."""
  c = rates.fresh_stage_config(cfg, stage)
  for key, value in fields.items():
    *path, leaf = key.split(".")
    node = c
    for part in path:
      node = node[part]
    if leaf not in node:
      raise SystemExit(f"--variant: the {stage} config has no field {key!r}")
    node[leaf] = value
  return c


def config_stem(spec: str) -> str:
  """A file-name part for a --config spec: 'tasks:task=stack,T=64' -> 'tasks_task-stack_T-64'."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.replace("=", "-")).strip("_")


def timed_rounds(steps: dict, rounds: int, seconds: float) -> dict:
  """{name: [updates/s of each round]}: steps[name] = (state, step fn), already compiled."""
  out = {name: [] for name in steps}
  for _ in range(rounds):
    for name, (state, step) in steps.items():
      state, rate = rates.timed_calls(state, step, seconds)
      out[name].append(rate)
      steps[name] = (state, step)
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument(
    "--config",
    default="mnist",
    help="experiments/configs/NAME.py, or NAME:ARG for its get_config(ARG)",
  )
  p.add_argument("--stage", default="smt", help="the pipeline stage to time")
  p.add_argument("--variant", action="append", help="KEY=VALUE[,KEY=VALUE]; repeatable")
  p.add_argument("--reference", default="bptt", help="another stage timed beside it ('' = none)")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--seconds", type=float, default=10.0, help="timing per variant per round")
  p.add_argument("--name", default="", help="suffix of the JSON file's name")
  args = p.parse_args(argv)
  cfg = runner.load_config(args.config)
  variants = {"as configured": {}}
  for text in args.variant or DEFAULT_VARIANTS:
    variants[text] = parse_variant(text)
  configs = {name: variant_config(cfg, args.stage, f) for name, f in variants.items()}
  if args.reference:
    configs[f"{args.reference} stage"] = variant_config(cfg, args.reference, {})
  load_before = os.getloadavg()[0]
  if load_before > 0.5:
    print(f"warning: load average {load_before:.2f}; the rates are meant for an idle machine")
  steps = {}
  for name, c in configs.items():
    state, step = fresh_start(c)
    state, metrics = step(state, 0)  # Compiles.
    jax.block_until_ready(metrics)
    steps[name] = (state, step)
  per_round = timed_rounds(steps, args.rounds, args.seconds)
  median = {name: statistics.median(r) for name, r in per_round.items()}
  base = median["as configured"]
  print(f"{args.config} stage {args.stage}, {jax.default_backend()}, {args.rounds} rounds")
  print(f"{'variant':40s} {'updates/s':>10s} {'time/update vs configured':>26s}")
  for name, rate in median.items():
    print(f"{name:40s} {rate:10.3f} {base / rate:26.2f}")
  stem = "_".join(
    filter(
      None, ["stage_cost", jax.default_backend(), config_stem(args.config), args.stage, args.name]
    )
  )
  out = HERE / "results" / f"{stem}.json"
  out.write_text(
    json.dumps(
      {
        "config": args.config,
        "stage": args.stage,
        "variants": variants,
        "updates_per_s": per_round,
        "median_updates_per_s": median,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "environment": environment(),
      },
      indent=1,
    )
    + "\n"
  )
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
