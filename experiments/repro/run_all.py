"""Every reproduction study in one queue of training runs (shared runs trained once), then each
study's report:

  python experiments/repro/run_all.py [--quick] [--out DIR] [--jobs 2] [--seeds N] [--doc PATH]
  python experiments/repro/run_all.py --quick --only credit,state
"""

import sys

from experiments.repro import ablations, credit, dmt_matters, length, runner, state, updaters

# Cheapest first, so that a budget cut short still leaves whole studies.
STUDIES = {m.STUDY.name: m.STUDY for m in (state, length, dmt_matters, updaters, ablations, credit)}


def main(argv: list) -> None:
  only = None
  if "--only" in argv:
    i = argv.index("--only")
    only, argv = argv[i + 1].split(","), argv[:i] + argv[i + 2 :]
    unknown = set(only) - set(STUDIES)
    if unknown:
      sys.exit(f"--only: no study named {sorted(unknown)}; the studies are {sorted(STUDIES)}")
  studies = [s for name, s in STUDIES.items() if only is None or name in only]
  runner.run_studies(studies, argv, "experiments/repro/run_all.py")


if __name__ == "__main__":
  main(sys.argv[1:])
