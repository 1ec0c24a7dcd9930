"""Studies 1-6 (credit, state, dmt_matters, length, updaters, ablations) in one queue of training
runs (shared runs trained once), then each study's report; studies 7-11 have their own drivers
(pixels, text, tasks, gradient_path, scaling):

  python experiments/repro/run_all.py [--quick] [--out DIR] [--jobs 2] [--seeds N] [--doc PATH]
  python experiments/repro/run_all.py --quick --only credit,state   # or --only=credit,state
"""

import argparse
import sys

from experiments.repro import ablations, credit, dmt_matters, length, runner, state, updaters

# Cheapest first, so that a budget cut short still leaves whole studies.
STUDIES = {m.STUDY.name: m.STUDY for m in (state, length, dmt_matters, updaters, ablations, credit)}


def only_flag() -> argparse.ArgumentParser:
  """--only STUDY[,STUDY...] (or --only=...), a parent parser of the studies' flags."""
  p = argparse.ArgumentParser(add_help=False)
  p.add_argument(
    "--only",
    default="",
    help=f"run these studies only, comma-separated (of {', '.join(STUDIES)}); default: all",
  )
  return p


def selected(argv: list) -> list:
  """The studies that --only names (all without it); exits naming an unknown one."""
  only = [s for s in only_flag().parse_known_args(argv)[0].only.split(",") if s]
  unknown = sorted(set(only) - set(STUDIES))
  if unknown:
    sys.exit(f"--only: no study named {unknown}; the studies are {sorted(STUDIES)}")
  return [s for name, s in STUDIES.items() if not only or name in only]


def main(argv: list) -> None:
  with runner.one_line_errors():
    runner.run_studies(selected(argv), argv, "experiments/repro/run_all.py", [only_flag()])


if __name__ == "__main__":
  main(sys.argv[1:])
