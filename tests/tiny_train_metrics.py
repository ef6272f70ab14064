"""Runs the tiny deterministic training run (tests/conftest.py's TINY_TRAIN_ARGS on a generated
folder) ``--repeat`` times, each in a fresh process, and prints its metrics JSON (without the
timing and the temporary data path) and its loss history. Used to check that a refactor of ``train/`` changes nothing::

    /work/main/.venv/bin/python tests/tiny_train_metrics.py --out /tmp/metrics-before.json
    # ... change train/ ...
    /work/main/.venv/bin/python tests/tiny_train_metrics.py --out /tmp/metrics-after.json
    cmp /tmp/metrics-before.json /tmp/metrics-after.json

Exit 0 when every repeat gives byte-identical JSON, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Run as a script, not imported: the repository (edge/, train/) and conftest's helpers on the path.
sys.path[:0] = [str(TESTS.parent), str(TESTS)]

from conftest import REPO_ROOT, TINY_TRAIN_ARGS, make_class_folder  # noqa: E402

VOLATILE = ("timing",)


def comparable(metrics: dict) -> dict:
    """metrics.json without what legitimately differs between runs (wall times, temp paths)."""
    kept = {k: v for k, v in metrics.items() if k not in VOLATILE}
    kept["data"] = {k: v for k, v in kept["data"].items() if k != "data_dir"}
    return kept


def run_once(data: Path, run: Path, extra: list[str]) -> str:
    argv = [sys.executable, "-m", "train", "--data-dir", str(data), "--run-dir", str(run), *TINY_TRAIN_ARGS, *extra]
    subprocess.run(argv, cwd=REPO_ROOT, check=True, capture_output=True)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    history = json.loads((run / "history.json").read_text(encoding="utf-8"))  # every epoch's loss
    return json.dumps({"metrics": comparable(metrics), "history": history}, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="fresh-process runs to compare")
    parser.add_argument("--out", type=Path, default=None, help="also write the metrics JSON here")
    parser.add_argument("extra", nargs="*", help="extra training flags (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_class_folder(Path(tmp) / "data", per_class=12, size=48)  # = the tiny_data fixture
        texts = [run_once(data, Path(tmp) / f"run{i}", args.extra) for i in range(args.repeat)]
    print(texts[0], end="")
    if args.out:
        args.out.write_text(texts[0], encoding="utf-8")
    same = all(text == texts[0] for text in texts)
    print(f"{len(texts)} runs identical: {same}", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
