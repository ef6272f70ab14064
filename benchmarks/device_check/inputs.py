"""What the check feeds both sides: test images, verification pairs, video frames, probe tensors.

Chosen from the bundle's ``split/test.txt`` deterministically (sha256 of each path orders a class;
classes take turns), so every run and both sides see the same inputs, spread over the classes.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Plan:
    """The inputs of one check; paths are absolute so both sides name them alike."""

    images: list[tuple[str, str]]        # (path, class) searched with --image
    pairs: list[tuple[str, str, bool]]   # (a, b, same class) for edge.verify --pairs
    frames: list[str]                    # images written, in order, as the video's frames
    tensors: list[str]                   # images whose x86-preprocessed tensors both sides run


def read_split(bundle: Path, data_dir: Path) -> list[tuple[str, str]]:
    """(absolute path, class) of each line of ``<bundle>/split/test.txt`` whose image exists."""
    split = bundle / "split" / "test.txt"
    if not split.is_file():
        raise FileNotFoundError(f"{split} is missing: the bundle lists its test images there (make export writes it)")
    rows = []
    for line in split.read_text().splitlines():
        relative, _, label = line.partition("\t")
        if relative and label and (data_dir / relative).is_file():
            rows.append((str((data_dir / relative).resolve()), label))
    if not rows:
        raise FileNotFoundError(f"none of the images in {split} is under {data_dir}; pass DATA_DIR=<the data folder>")
    return rows


def interleave(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Classes take turns; within a class, images in sha256 order of their path."""
    by_class: dict[str, list[tuple[str, str]]] = {}
    for row in sorted(rows, key=lambda row: hashlib.sha256(row[0].encode()).hexdigest()):
        by_class.setdefault(row[1], []).append(row)
    queues = [by_class[label] for label in sorted(by_class)]
    order = []
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    return order


def make_plan(rows: list[tuple[str, str]], images: int, pairs: int, frames: int, tensors: int) -> Plan:
    """Search images first, then the video's frames, from one interleaved order; pairs alternate same/different."""
    order = interleave(rows)
    if len(order) < images + frames or images < 2:
        raise ValueError(f"need at least {images + frames} test images (and 2 to search), found {len(order)}")
    searched = order[:images]
    pair_rows = []
    for index in range(pairs):
        a_path, a_label = searched[index % len(searched)]
        want_same = index % 2 == 0
        candidates = [row for row in order if row[0] != a_path and (row[1] == a_label) == want_same]
        b_path, b_label = candidates[index // 2 % len(candidates)]
        pair_rows.append((a_path, b_path, a_label == b_label))
    return Plan(searched, pair_rows, [path for path, _ in order[images:images + frames]],
                [path for path, _ in searched[:tensors]])


def write_plan(plan: Plan, folder: Path) -> None:
    """Writes ``plan.json`` and ``pairs.csv`` (columns a,b,same) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.json").write_text(json.dumps(asdict(plan), indent=1))
    with open(folder / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "same"])
        writer.writerows((a, b, int(same)) for a, b, same in plan.pairs)


def read_plan(folder: Path) -> Plan:
    data = json.loads((folder / "plan.json").read_text())
    return Plan([tuple(row) for row in data["images"]], [tuple(row) for row in data["pairs"]],
                data["frames"], data["tensors"])
