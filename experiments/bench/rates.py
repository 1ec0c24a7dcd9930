"""Updates per second of every stage of a reproduction study's runs, measured one stage at a time
on a machine with nothing else running: the load-free budget that a study's report sets beside
the measured wall-clock, which other processes on a shared machine inflate unevenly.

  python experiments/bench/rates.py [--study credit] [--runs REGEX] [--seconds 8]

Writes (and merges into) experiments/bench/results/rates_<backend>.json:
{"rates": {"RUN/STAGE": updates/s}, "measured": {"RUN/STAGE": {"utc", "load_before",
"load_after", "commit", "config"}}, "environment": {...}}, where RUN is the run's name without
its seed (seeds share a rate). Identical stage configs are timed once. A call that re-measures
some stages replaces only their entries; "measured" says when, under what load, and for which
stage config ("config": experiments/repro/reporting.cost_fingerprint) each was taken, so that
`--list` can name the rates that a config change made stale.
"""

import argparse
import importlib
import json
import os
import re
import tempfile
import time

import jax

from experiments.bench.common import environment
from experiments.repro import runner
from experiments.repro.reporting import cost_fingerprint, rate_key, rates_path
from smt_jax.train.loop import fresh_start
from smt_jax.train.pipeline import stage_config, stage_names


def timed_calls(state, step, seconds: float):
  """(state, updates/s): calls the compiled train step `step` for about `seconds`, at least 3
  times, each finished before the next."""
  calls, start = 0, time.perf_counter()
  while calls < 3 or time.perf_counter() - start < seconds:
    state, metrics = step(state, calls + 1)
    jax.block_until_ready(metrics)
    calls += 1
  return state, calls / (time.perf_counter() - start)


def updates_per_second(cfg, seconds: float) -> float:
  """Times cfg's train step (after one compiling call) for about `seconds`, at least 3 calls."""
  state, step = fresh_start(cfg)
  state, metrics = step(state, 0)
  jax.block_until_ready(metrics)
  return timed_calls(state, step, seconds)[1]


def fresh_stage_config(cfg, stage: str):
  """The run config of `stage` of cfg's pipeline, from fresh parameters (ckpt.init_from
  cleared: a rate does not depend on the parameters' values)."""
  c = stage_config(cfg, stage, tempfile.gettempdir())
  c.ckpt.init_from = ""
  return c


def stage_configs(runs: list) -> dict:
  """{rate_key: stage config (fresh parameters)} of every stage of `runs`."""
  out = {}
  for run in runs:
    cfg = runner.run_config(run)
    for stage in stage_names(cfg):
      key = rate_key(run.name, stage)
      if key not in out:
        out[key] = fresh_stage_config(cfg, stage)
  return out


def measure(runs: list, seconds: float, log=print) -> tuple[dict, dict]:
  """({rate_key: updates/s}, {rate_key: cost_fingerprint}) of every stage of `runs`, each
  distinct stage config timed once."""
  by_config, rates, fingerprints = {}, {}, {}
  for key, cfg in stage_configs(runs).items():
    whole = cfg.to_json(sort_keys=True)
    if whole not in by_config:
      by_config[whole] = updates_per_second(cfg, seconds)
      log(f"{key:45s} {by_config[whole]:8.2f} updates/s")
    rates[key], fingerprints[key] = by_config[whole], cost_fingerprint(cfg)
  return rates, fingerprints


def write_merged(path, rates: dict, when: dict, env: dict, fingerprints: dict) -> None:
  """Writes `rates` into the JSON at `path` (created if missing), each with `when` it was
  measured and its stage config's fingerprint; the file's other entries keep their rates and
  measurement notes."""
  old = json.loads(path.read_text()) if path.is_file() else {"rates": {}, "measured": {}}
  notes = {key: {**when, "config": fingerprints[key]} for key in rates}
  out = {
    "rates": {**old["rates"], **rates},
    "measured": {**old["measured"], **notes},
    "environment": env,
  }
  path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--study", default="credit", help="experiments/repro/STUDY.py")
  p.add_argument("--runs", default="", help="only the runs whose name matches this expression")
  p.add_argument("--seconds", type=float, default=8.0, help="timing per stage after compiling")
  args = p.parse_args(argv)
  study = importlib.import_module(f"experiments.repro.{args.study}").STUDY
  runs = [r for r in study.runs(False, 1) if re.search(args.runs, r.name)]
  if not runs:
    raise SystemExit(f"no run of {args.study} matches --runs={args.runs!r}")
  load_before = os.getloadavg()[0]
  if load_before > 0.5:
    print(f"warning: load average {load_before:.2f}; the rates are meant for an idle machine")
  rates, fingerprints = measure(runs, args.seconds)
  env = environment()
  when = {
    "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    "load_before": load_before,
    "load_after": os.getloadavg()[0],
    "commit": env["commit"],
  }
  path = rates_path(jax.default_backend())
  write_merged(path, rates, when, env, fingerprints)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
