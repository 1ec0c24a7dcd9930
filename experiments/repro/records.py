"""Run records: what a study's report reads of a finished run, kept in git.

A run folder (OUT/POOL/runs/NAME) holds checkpoints of megabytes and lives on one machine. Its
record (docs/results/records/POOL/NAME) holds the rest: result.json, every stage's config.json,
metrics.jsonl, eval.json (its best checkpoint's too), samples and traces, and the report's
reads of the checkpoints (`cached`, report_cache.json). With the record in git, a study's
driver on another machine counts the run as finished: it does not train it again, and
--report_only writes the report from the record.

A report that needs a read of a recorded run's checkpoints that its cache does not hold (its
code changed since) stops with an error that names the run and the fix: re-train the run.
"""

import json
import pathlib
import shutil
from collections.abc import Callable

from smt_jax.checkpointing import SUBDIR

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / "docs" / "results" / "records"
CACHE = "report_cache.json"  # In the run folder: {key: value} of the report's checkpoint reads.
TEXT = {".json", ".jsonl", ".txt"}
IMAGES = {"samples.png"}  # The images a report shows (pixels.sample_grids).
SKIPPED = {"log.txt", "run.json"}  # The worker's log and spec: machine-specific paths.


def root(quick: bool, flag: str | None) -> pathlib.Path | None:
  """Where a driver keeps its runs' records: --records (`flag`; "" = nowhere), by default
  DEFAULT_ROOT for full-size runs and nowhere for --quick ones (smoke runs are not results)."""
  if flag is None:
    return None if quick else DEFAULT_ROOT
  return pathlib.Path(flag) if flag else None


def record_dir(root: pathlib.Path, workdir: pathlib.Path) -> pathlib.Path:
  """The record of the run folder OUT/POOL/runs/NAME under `root`: ROOT/POOL/NAME."""
  return root / workdir.parent.parent.name / workdir.name


def kept(path: pathlib.Path) -> bool:
  """Whether a file of a run folder (`path` relative to it) belongs in its record: text (json,
  jsonl, txt) and the sample grids that reports show (samples.png); not a checkpoint (a
  checkpoints/ folder or an orbax step folder such as best/1200/), a hidden file, the worker's
  log or spec, or the evaluation's plots (their numbers are in eval.json)."""
  parts = path.parts
  return (path.suffix in TEXT or path.name in IMAGES) and not (
    SUBDIR in parts
    or any(p.isdigit() for p in parts[:-1])
    or any(p.startswith(".") for p in parts)
    or path.name in SKIPPED
  )


def save(workdir: pathlib.Path, dest: pathlib.Path) -> None:
  """Writes the record of the finished run in `workdir` to `dest`, replacing an older one whole
  (written beside it first, so a failure leaves the old record as it was)."""
  files = [p.relative_to(workdir) for p in sorted(workdir.rglob("*")) if p.is_file()]
  files = [p for p in files if kept(p)]
  if pathlib.Path("result.json") not in files:
    raise FileNotFoundError(f"{workdir} holds no result.json: only a finished run has a record")
  staging = dest.with_name(dest.name + ".partial")
  shutil.rmtree(staging, ignore_errors=True)
  for rel in files:
    (staging / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(workdir / rel, staging / rel)
  shutil.rmtree(dest, ignore_errors=True)
  staging.rename(dest)


def find(run_json: dict, dest: pathlib.Path) -> dict | None:
  """The result of the run recorded in `dest` where it is the run `run_json` (Run.to_json(); tags
  aside, which are labels), with "workdir" pointing at the record and "recorded" True; None
  where there is no such record."""
  path = dest / "result.json"
  if not path.is_file():
    return None
  result = json.loads(path.read_text())
  if not same_run(result["run"], run_json):
    return None
  return {**result, "workdir": str(dest), "recorded": True}


def same_run(done: dict, run_json: dict) -> bool:
  """Whether a finished run (its result.json's "run") is the run `run_json` (Run.to_json()):
  the same name, config, overrides, seed and measures; tags are only labels (a run shared by
  studies may carry either study's)."""
  return all(done.get(k) == v for k, v in run_json.items() if k != "tags")


def cached(result: dict, key: str, compute: Callable[[], object]):
  """compute()'s value (JSON: numbers, strings, lists, dicts, None) for the run of `result`,
  kept under `key` in its folder's CACHE, so that a record carries the report's reads of the
  checkpoints it leaves out. `key` names everything the value depends on besides the run (the
  read's constants: test seed, number of sequences)."""
  path = pathlib.Path(result["workdir"]) / CACHE
  cache = json.loads(path.read_text()) if path.is_file() else {}
  if key in cache:
    return cache[key]
  if result.get("recorded"):
    raise FileNotFoundError(
      f"run {result['run']['name']} is a record without checkpoints ({result['workdir']}) and "
      f"its report cache has no {key!r}: re-train the run (delete its record) so the report can "
      "read its checkpoints"
    )
  value = json.loads(json.dumps(compute()))  # The types a later read of the cache gives.
  if path.parent.is_dir():  # No run folder (a result without one): nothing to keep it in.
    cache[key] = value
    path.write_text(json.dumps(cache, indent=1) + "\n")
  return value
