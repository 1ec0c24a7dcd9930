"""Every reproduction study, one after another, with the same flags:

  python experiments/repro/run_all.py [--quick] [--out DIR] [--jobs 2] [--doc PATH]
  python experiments/repro/run_all.py --quick --only credit,state
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from experiments.repro import (ablations, common, credit, dmt_matters, length,  # noqa: E402
                               state, updaters)

STUDIES = {m.STUDY.name: m.STUDY for m in (credit, state, dmt_matters, length, updaters,
                                           ablations)}


def main(argv: list) -> None:
  only = None
  if "--only" in argv:
    i = argv.index("--only")
    only, argv = argv[i + 1].split(","), argv[:i] + argv[i + 2:]
  for name, study in STUDIES.items():
    if only is None or name in only:
      common.main(study, argv)


if __name__ == "__main__":
  main(sys.argv[1:])
