"""Compares every emulated side with x86 and writes ``report.json`` and ``report.md``.

    python -m benchmarks.device_check.report --out artifacts/device-check   # exit 1 when a check fails

Reads what ``python -m benchmarks.device_check`` left in OUT (``inputs/plan.json``, ``sides/*/``,
``run.json``). Each emulated side is compared with the x86 side of the same interpreter (int8
outputs of LiteRT and tflite-runtime differ by a few steps on any CPU, so across interpreters
only that step count is reported). x86 tflite-runtime is judged by its reference kernels
(``runner.X86_KERNELS``); how far x86's default kernels are from them is reported, not judged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.device_check.compare import compare_sides, load_side
from benchmarks.device_check.inputs import read_plan
from benchmarks.device_check.profiles import PROFILES
from edge.atomic import write_text_atomic


def build_report(out: Path) -> dict:
    """The comparisons of every emulated side found in ``out/sides``, with the run's record."""
    truth = dict(read_plan(out / "inputs").images)
    folders = [folder for folder in sorted((out / "sides").glob("*")) if (folder / "side.json").is_file()]
    sides = {folder.name: load_side(folder) for folder in folders}
    comparisons = []
    for key, side in sides.items():
        if side.record["arch"] == "x86_64":
            continue
        reference = sides.get(f"x86-{side.record['interpreter']}")
        if reference is None:
            comparisons.append({"emulated": key, "failures": [f"no x86 side for {side.record['interpreter']}"]})
            continue
        profile = PROFILES.get(side.record.get("profile") or "")
        figures = compare_sides(reference, side, truth, profile.part if profile else None)
        figures.update(interpreter=side.record["interpreter"], x86_kernels=reference.record.get("kernels"),
                       qemu_cpu=side.record.get("qemu_cpu"),
                       cpu_part_seen=side.info.get("cpu", {}).get("CPU part"),
                       versions=side.record.get("versions"),
                       seconds=round(sum(c["seconds"] for c in side.record["commands"].values()), 1))
        comparisons.append(figures)
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    failures = [f"{c['emulated']}: {text}" for c in comparisons for text in c["failures"]]
    if not comparisons:
        failures.append(f"no emulated side in {out / 'sides'}")
    return {"passed": not failures, "failures": failures, "comparisons": comparisons,
            "x86_interpreters_int8_max_step": _cross_interpreter_step(sides),
            "x86_default_vs_reference_kernels_int8_max_step": _kernel_steps(sides), "run": run}


def _cross_interpreter_step(sides: dict) -> int | None:
    """x86 LiteRT against x86 tflite-runtime, each with its default kernels."""
    a, b = (sides.get(key) for key in ("x86-litert", "x86-tflite-runtime"))
    a, b = (None if side is None else side.outputs_default if side.outputs_default is not None else side.outputs
            for side in (a, b))
    if a is None or b is None or a.shape != b.shape:
        return None
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def _kernel_steps(sides: dict) -> dict[str, int | None]:
    """Per interpreter: x86's default against its reference kernels on the probe's tensors (reported only)."""
    steps = {}
    for side in sides.values():
        a, b = side.outputs_default, side.outputs_reference
        if side.record["arch"] == "x86_64":
            steps[side.record["interpreter"]] = (int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())
                                                 if a is not None and b is not None and a.shape == b.shape else None)
    return steps


def markdown(report: dict) -> str:
    """The short table for README: one row per emulated side."""
    lines = ["| emulated side | interpreter | top-1 agreement | label agreement | top-5 sets identical "
             "| P@5 x86 → arm64 | verdicts | video frames, top-1 agreement | int8 output on identical input "
             "| pixels differing after resize | min embedding cosine | result |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in report["comparisons"]:
        if "top1_agreement" not in c:
            lines.append(f"| {c['emulated']} | | | | | | | | | | | FAIL |")
            continue
        kernels = c.get("x86_kernels")
        other = "reference" if kernels == "default" else "default"
        lines.append(
            f"| {c['qemu_cpu']} (part {c['cpu_part_seen']}) | {c['interpreter']} "
            f"| {c['top1_agreement']:.2f} of {c['queries']} | {c['decision_agreement']:.2f} "
            f"| {c['top5_identical']:.2f} "
            f"| {c['p5_reference']:.3f} → {c['p5_emulated']:.3f} "
            f"| {'identical' if c['verdicts_identical'] else 'DIFFER'} ({c['pairs']} pairs) "
            f"| {c['frames_emulated']}/{c['frames_reference']}, {c['video_top1_agreement']:.2f} "
            f"| {'bit-identical' if c['int8_identical'] else 'max step ' + str(c['int8_max_step'])} "
            f"to x86 {kernels} kernels ({c['tensors']} tensors; to x86 {other}: "
            f"{_steps(c.get(f'int8_max_step_to_x86_{other}_kernels'))}) "
            f"| {_percent(c.get('pixels_differing'))} (max {c.get('pixel_max_diff')}) "
            f"| {_number(c.get('embedding_min_cosine'))} | {'pass' if not c['failures'] else 'FAIL'} |")
    lines.append("")
    if report["x86_interpreters_int8_max_step"] is not None:
        lines.append(f"x86 LiteRT vs x86 tflite-runtime int8 output (default kernels): "
                     f"max step {report['x86_interpreters_int8_max_step']}.")
    kernel_steps = report.get("x86_default_vs_reference_kernels_int8_max_step") or {}
    if kernel_steps:
        lines.append("x86 default vs reference kernels, int8 output (reported, not judged): "
                     + ", ".join(f"{name} {_steps(step)}" for name, step in kernel_steps.items())
                     + ". x86 tflite-runtime is judged by its reference kernels, the arithmetic the interpreter "
                     "specifies, which is the same on x86 and arm64 (the emulated tflite-runtime probes run it too, "
                     "below); x86's optimised int8 kernels approximate it differently from arm64's, so x86's default "
                     "output is no stand-in for a Pi's. LiteRT is judged by x86's default kernels, which its arm64 "
                     "build matches bit for bit.")
    for c in report["comparisons"]:
        if c.get("emulated_reference_to_x86_reference_max_step") is not None:
            lines.append(f"{c['emulated']} reference kernels vs x86 reference kernels: "
                         f"{_steps(c['emulated_reference_to_x86_reference_max_step'])}; its default vs its reference "
                         f"kernels: {_steps(c['emulated_default_to_emulated_reference_max_step'])} "
                         f"({c['emulated_default_to_emulated_reference_values_differing']} of {c.get('int8_values')} "
                         f"values; reported, not judged).")
    for text in report["failures"]:
        lines.append(f"- FAIL {text}")
    return "\n".join(lines) + "\n"


def _steps(value) -> str:
    return "n/a" if value is None else "identical" if value == 0 else f"max step {value}"


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the folder python -m benchmarks.device_check wrote")
    args = parser.parse_args(argv)
    report = build_report(args.out)
    write_text_atomic(args.out / "report.json", json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    write_text_atomic(args.out / "report.md", table)
    print(table, end="")
    print(f"device-check: {'passed' if report['passed'] else 'FAILED'}; {args.out / 'report.json'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
