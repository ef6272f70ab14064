"""Pairs CSVs for ``edge.verify --pairs``: columns ``a,b[,same]``, read the way people write them.

UTF-8 with or without Excel's byte-order mark ("CSV UTF-8"), or Latin-1 (with a warning); header
names in any case; ``same`` one of 1/0, true/false, yes/no, same/different (any case) or empty
(unlabelled). A row that is short, or whose ``same`` is anything else, becomes a PairsError naming
the file and line, and the other rows are still read. Paths are relative to the CSV's folder
unless absolute.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

SAME_WORDS = {"1": True, "true": True, "yes": True, "same": True,
              "0": False, "false": False, "no": False, "different": False}

log = logging.getLogger("edge.verify")


class PairsError(ValueError):
    """A pairs CSV, or one of its rows, that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Pair:
    """One usable row of a pairs CSV (``same`` None: unlabelled)."""

    line: int
    a: str
    b: str
    same: bool | None


def read_pairs(path: Path) -> tuple[list[Pair], list[PairsError]]:
    """Usable rows of a pairs CSV, and an error for each row that is not.

    Raises:
      PairsError: no such file, or no header with columns a and b.
      csv.Error: the file is not CSV at all (a NUL byte, a field over the size limit).
    """
    path = Path(path)
    if not path.is_file():
        raise PairsError(f"no pairs file {path}")
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    header = [name.strip().lower() for name in next(reader, [])]
    if "a" not in header or "b" not in header:
        raise PairsError(f"{path}: expected a CSV header with columns a,b[,same], got {header}")
    columns = {name: header.index(name) for name in ("a", "b", "same") if name in header}
    pairs, problems = [], []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        try:
            pairs.append(_pair(path, reader.line_num, row, columns))
        except PairsError as error:
            problems.append(error)
    return pairs, problems


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8; reading it as Latin-1", path)
        return data.decode("latin-1")


def _pair(path: Path, line: int, row: list[str], columns: dict[str, int]) -> Pair:
    where = f"{path} line {line}"
    if len(row) <= max(columns["a"], columns["b"]) or not row[columns["a"]].strip() or not row[columns["b"]].strip():
        raise PairsError(f"{where}: expected values for a and b, got {row}; row skipped")
    a, b = (row[columns[key]].strip() for key in ("a", "b"))
    same = None
    if "same" in columns and len(row) > columns["same"] and row[columns["same"]].strip():
        word = row[columns["same"]].strip().lower()
        if word not in SAME_WORDS:
            raise PairsError(f"{where}: same is {row[columns['same']]!r}, expected one of "
                             f"{'/'.join(SAME_WORDS)} or empty; row skipped")
        same = SAME_WORDS[word]
    return Pair(line, _resolve(path, a), _resolve(path, b), same)


def _resolve(path: Path, name: str) -> str:
    return name if Path(name).is_absolute() else str(path.parent / name)
