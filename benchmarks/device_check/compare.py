"""The verdict: an emulated side against the x86 side with the same interpreter.

The x86 side runs the kernels ``runner.X86_KERNELS`` names for its interpreter (tflite-runtime: its
reference kernels, the arithmetic an arm64 tflite-runtime computes; LiteRT: the default ones), the
emulated side the default ones, as a Pi does; a side that ran other kernels fails.

It fails on a different gallery listing, any different verification verdict, a different number
of video frames, top-1 agreement below 0.8 (image search, and the video's frames), a P@5 drop
above 0.05, any difference of the raw int8 output on the identical input tensors, a command that
exited differently, or a side that did not run what it claims (interpreter, kernels, CPU part,
package versions). The rest (decisions, top-5 sets, pixel and embedding differences, the distance to
x86's other kernel set) is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.device_check.runner import X86_KERNELS

MIN_TOP1_AGREEMENT = 0.8
MAX_P5_DROP = 0.05
INTERPRETER_MODULES = {"litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}


@dataclass
class SideResult:
    """What one side printed and saved (see runner.run_side and probe)."""

    record: dict               # side.json
    listing: object            # parsed gallery list --json (None when unreadable)
    search: list[dict]
    verify: list[dict]
    video: list[dict]
    info: dict                 # probe/info.json
    outputs: np.ndarray | None
    outputs_default: np.ndarray | None    # x86 sides: the default kernels' raw outputs
    outputs_reference: np.ndarray | None  # x86 sides: the reference kernels' raw outputs
    local_tensors: np.ndarray | None
    embeddings: np.ndarray | None


def load_side(folder: Path) -> SideResult:
    """Reads a side's folder; missing or broken files become empty values (and fail the check)."""
    probe = folder / "probe"
    return SideResult(json.loads((folder / "side.json").read_text()), _json(folder / "list.out"),
                      _json_lines(folder / "search.out"), _json_lines(folder / "verify.out"),
                      _json_lines(folder / "video.out"), _json(probe / "info.json") or {},
                      _npy(probe / "outputs.npy"), _npy(probe / "outputs_default.npy"),
                      _npy(probe / "outputs_reference.npy"),
                      _npy(probe / "local_tensors.npy"), _npy(probe / "embeddings.npy"))


def precision_at_5(search: list[dict], truth: dict[str, str]) -> float:
    """Mean share of the five matches with the query's class, over the queries in ``truth``."""
    rows = [row for row in search if row.get("query") in truth]
    if not rows:
        return 0.0
    return float(np.mean([sum(m["label"] == truth[row["query"]] for m in row["matches"][:5]) / 5 for row in rows]))


def agreement(ref: list[dict], emu: list[dict], key) -> tuple[float, int]:
    """Share of the reference's queries where ``key(row)`` is the same on both sides, and how many."""
    theirs = {str(row.get("query")): key(row) for row in emu}
    if not ref:
        return 0.0, 0
    same = sum(str(row.get("query")) in theirs and theirs[str(row.get("query"))] == key(row) for row in ref)
    return same / len(ref), len(ref)


def _top1(row: dict):
    return row["matches"][0]["path"] if row.get("matches") else None


def _top5(row: dict):
    return sorted(m["path"] for m in row.get("matches", [])[:5])


def compare_sides(ref: SideResult, emu: SideResult, truth: dict[str, str], expected_part: str | None) -> dict:
    """Figures and failures of ``emu`` against ``ref``; ``truth`` maps each searched path to its class."""
    failures: list[str] = []
    figures: dict = {"reference": ref.record["key"], "emulated": emu.record["key"]}
    _check_setup(ref, emu, expected_part, failures)
    for name, command in ref.record["commands"].items():
        theirs = emu.record["commands"].get(name, {}).get("rc")
        if theirs != command["rc"]:
            failures.append(f"{name} exited {theirs} on {emu.record['key']}, {command['rc']} on {ref.record['key']}")
    figures["listing_identical"] = ref.listing is not None and ref.listing == emu.listing
    if not figures["listing_identical"]:
        failures.append("the gallery listings differ")
    figures["top1_agreement"], figures["queries"] = agreement(ref.search, emu.search, _top1)
    figures["decision_agreement"], _ = agreement(ref.search, emu.search, lambda row: row.get("label"))
    figures["top5_identical"], _ = agreement(ref.search, emu.search, _top5)
    figures["p5_reference"] = precision_at_5(ref.search, truth)
    figures["p5_emulated"] = precision_at_5(emu.search, truth)
    figures["p5_drop"] = figures["p5_reference"] - figures["p5_emulated"]
    if figures["queries"] == 0 or figures["top1_agreement"] < MIN_TOP1_AGREEMENT:
        failures.append(f"top-1 agreement {figures['top1_agreement']:.3f} < {MIN_TOP1_AGREEMENT} "
                        f"({figures['queries']} queries)")
    if figures["p5_drop"] > MAX_P5_DROP:
        failures.append(f"P@5 dropped by {figures['p5_drop']:.3f} > {MAX_P5_DROP}")
    verdicts = lambda rows: [(row.get("a"), row.get("b"), row.get("same")) for row in rows]  # noqa: E731
    figures["pairs"] = len(ref.verify)
    figures["verdicts_identical"] = bool(ref.verify) and verdicts(ref.verify) == verdicts(emu.verify)
    if not figures["verdicts_identical"]:
        failures.append(f"verification verdicts differ ({len(ref.verify)} vs {len(emu.verify)} pairs): "
                        + "; ".join(_verdict_differences(ref.verify, emu.verify)))
    figures["frames_reference"], figures["frames_emulated"] = len(ref.video), len(emu.video)
    figures["video_top1_agreement"], _ = agreement(ref.video, emu.video, _top1)
    if not ref.video or len(ref.video) != len(emu.video):
        failures.append(f"video frames: {len(emu.video)} on {emu.record['key']}, {len(ref.video)} on x86")
    elif figures["video_top1_agreement"] < MIN_TOP1_AGREEMENT:
        failures.append(f"video top-1 agreement {figures['video_top1_agreement']:.3f} < {MIN_TOP1_AGREEMENT}")
    figures.update(_tensor_figures(ref, emu, failures))
    figures["failures"] = failures
    return figures


def _verdict_differences(ref: list[dict], emu: list[dict]) -> list[str]:
    theirs = {(row.get("a"), row.get("b")): row for row in emu}
    lines = []
    for row in ref:
        other = theirs.get((row.get("a"), row.get("b")))
        if other is None or other.get("same") != row.get("same"):
            name = f"{Path(str(row.get('a'))).name} vs {Path(str(row.get('b'))).name}"
            there = ("missing" if other is None
                     else f"same={other.get('same')} at {other.get('distance', float('nan')):.4f}")
            lines.append(f"{name}: x86 same={row.get('same')} at distance {row.get('distance', float('nan')):.4f}, "
                         f"emulated {there} (threshold {row.get('threshold', float('nan')):.4f})")
    return lines or ["the pair lists differ"]


def _check_setup(ref: SideResult, emu: SideResult, expected_part: str | None, failures: list[str]) -> None:
    module = INTERPRETER_MODULES.get(emu.record["interpreter"])
    for side in (ref, emu):
        if side.info.get("interpreter") != module:
            failures.append(f"{side.record['key']} ran {side.info.get('interpreter')!r}, not {module!r}")
    wanted = {ref.record["key"]: X86_KERNELS.get(ref.record["interpreter"], "default"), emu.record["key"]: "default"}
    for side in (ref, emu):
        ran = {side.record.get("kernels"), side.info.get("kernels")}
        if ran != {wanted[side.record["key"]]}:
            failures.append(f"{side.record['key']} ran the {'/'.join(sorted(map(str, ran)))} kernels, "
                            f"not the {wanted[side.record['key']]} ones")
    seen = emu.info.get("cpu", {}).get("CPU part")
    if expected_part and seen != expected_part:
        failures.append(f"{emu.record['key']} saw CPU part {seen!r}, not the profile's {expected_part}")
    if ref.record.get("versions") != emu.record.get("versions"):
        failures.append(f"package versions differ: {ref.record.get('versions')} vs {emu.record.get('versions')}")


def _tensor_figures(ref: SideResult, emu: SideResult, failures: list[str]) -> dict:
    figures: dict = {"tensors": 0 if ref.outputs is None else len(ref.outputs)}
    a, b = ref.outputs, emu.outputs
    same = a is not None and b is not None and a.shape == b.shape and a.dtype == b.dtype and len(a) > 0
    figures["int8_identical"] = bool(same and np.array_equal(a, b))
    figures["int8_max_step"] = int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max()) if same else None
    figures["int8_values_differing"] = int((a != b).sum()) if same else None
    figures["int8_values"] = int(a.size) if same else None
    if not figures["int8_identical"]:
        failures.append(f"raw model outputs differ on identical inputs (max step {figures['int8_max_step']}, "
                        f"{figures['int8_values_differing']} of {figures['int8_values']} values, "
                        f"shapes {None if a is None else a.shape} / {None if b is None else b.shape})")
    # Reported, not judged: the emulated output against each of x86's kernel sets (one is the judged one)
    for kernels, r in (("default", ref.outputs_default), ("reference", ref.outputs_reference)):
        figures[f"int8_max_step_to_x86_{kernels}_kernels"] = (
            int(np.abs(r.astype(np.int64) - b.astype(np.int64)).max())
            if r is not None and b is not None and r.shape == b.shape else None)
    # Reported, not judged (emulated sides that saved both kernel sets): the emulated reference kernels
    # against x86's, and the emulated default kernels against the emulated reference ones
    figures["emulated_reference_to_x86_reference_max_step"] = _max_step(emu.outputs_reference, ref.outputs_reference)
    figures["emulated_default_to_emulated_reference_max_step"] = _max_step(emu.outputs_default, emu.outputs_reference)
    figures["emulated_default_to_emulated_reference_values_differing"] = (
        None if figures["emulated_default_to_emulated_reference_max_step"] is None
        else int((emu.outputs_default != emu.outputs_reference).sum()))
    x, y = ref.local_tensors, emu.local_tensors
    if x is not None and y is not None and x.shape == y.shape:
        differ = x != y
        figures["pixels_differing"] = float(differ.mean())
        figures["pixel_max_diff"] = int(np.abs(x.astype(np.int16) - y.astype(np.int16)).max())
    e, f = ref.embeddings, emu.embeddings
    if e is not None and f is not None and e.shape == f.shape:
        figures["embedding_min_cosine"] = float(np.min(np.sum(e * f, axis=1)))
    return figures


def _max_step(a, b) -> int | None:
    if a is None or b is None or a.shape != b.shape:
        return None
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _json_lines(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _npy(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
