"""make device-check's verdict, on x86 only: a real x86 run of the edge commands on the tiny bundle,
copied as if an emulated Pi had produced it, passes; each doctored copy fails with its reason.

Two real x86 runs: LiteRT's default kernels (the LiteRT check), and the same commands with
``--reference-kernels`` standing in for the x86 tflite-runtime side (tflite-runtime is not in the
test venv; LiteRT's reference kernels are the same BUILTIN_REF code path): the emulated twin of the
latter must match the reference kernels while running the default ones, as an arm64 tflite-runtime does.

The emulation itself (qemu, the arm64 root file system) is not run here: `make device-check` does that.
"""

from __future__ import annotations

import json
import shutil
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from benchmarks.device_check import inputs, prepare, rootfs, runner
from benchmarks.device_check.__main__ import _run as run_one_side
from benchmarks.device_check.profiles import PROFILES, cpuinfo_text, parse_profiles
from benchmarks.device_check.report import build_report, main as report_main
from benchmarks.device_check.sites import platform_tags


@pytest.fixture(scope="module")
def x86_run(tiny_bundle, tiny_data, tmp_path_factory) -> Path:
    """A results folder with two real x86 sides on the tiny bundle with this venv's packages:
    ``x86-litert`` (default kernels) and ``x86-tflite-runtime`` (LiteRT with the reference kernels,
    relabelled: see the module's docstring)."""
    out = tmp_path_factory.mktemp("device-check")
    bundle = out / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    plan = inputs.make_plan(inputs.read_split(bundle, tiny_data), images=4, pairs=2, frames=2, tensors=2)
    inputs.write_plan(plan, out / "inputs")
    assert prepare.main(["--bundle", str(bundle), "--plan", str(out / "inputs")]) == 0
    commands = runner.edge_commands(bundle, out / "inputs", [path for path, _ in plan.images], len(plan.frames))
    site = Path(sysconfig.get_paths()["purelib"])
    for interpreter in ("litert", "tflite-runtime"):
        side = runner.x86_side(site, interpreter)  # the x86 side make device-check runs for it
        run_one_side(side, bundle, out, commands, log=lambda text: None)
        folder = out / "sides" / side.key
        record = json.loads((folder / "side.json").read_text())
        assert all(command["rc"] == 0 for command in record["commands"].values()), record
        if interpreter == "tflite-runtime":
            info = json.loads((folder / "probe" / "info.json").read_text())
            info["interpreter"] = "tflite_runtime"
            (folder / "probe" / "info.json").write_text(json.dumps(info))
    return out


def as_emulated(x86_run: Path, tmp_path: Path, profile: str = "a72", interpreter: str = "litert") -> Path:
    """A copy of the run whose x86 side also appears, unchanged but marked as run with the default
    kernels, as the emulated ``profile`` side."""
    out = tmp_path / "run"
    shutil.copytree(x86_run, out)
    emulated = out / "sides" / f"{profile}-{interpreter}"
    shutil.copytree(out / "sides" / f"x86-{interpreter}", emulated)
    for name in ("outputs_default.npy", "outputs_reference.npy"):  # an arm64 probe saves only its own
        (emulated / "probe" / name).unlink()
    record = json.loads((emulated / "side.json").read_text())
    record.update(key=emulated.name, arch="aarch64", profile=profile, qemu_cpu=PROFILES[profile].qemu_cpu,
                  kernels="default")
    (emulated / "side.json").write_text(json.dumps(record))
    info = json.loads((emulated / "probe" / "info.json").read_text())
    info.update(cpu={"CPU part": PROFILES[profile].part}, kernels="default")
    (emulated / "probe" / "info.json").write_text(json.dumps(info))
    return out


def test_the_x86_run_is_real(x86_run):
    side = x86_run / "sides" / "x86-litert"
    searched = [json.loads(line) for line in (side / "search.out").read_text().splitlines()]
    assert len(searched) == 4 and all(len(row["matches"]) == 5 for row in searched)
    assert len((side / "video.out").read_text().splitlines()) == 2  # every frame of the 2-frame video
    assert len((side / "verify.out").read_text().splitlines()) == 2
    outputs = np.load(side / "probe" / "outputs.npy")
    assert outputs.dtype == np.int8 and outputs.shape[0] == 2
    assert np.array_equal(outputs, np.load(side / "probe" / "outputs_default.npy"))
    assert json.loads((side / "probe" / "info.json").read_text())["interpreter"] == "ai_edge_litert"


def test_the_x86_tflite_runtime_side_runs_every_command_with_the_reference_kernels(x86_run):
    side = x86_run / "sides" / "x86-tflite-runtime"
    record = json.loads((side / "side.json").read_text())
    assert record["kernels"] == "reference"
    assert all(command["argv"][-1] == "--reference-kernels" for command in record["commands"].values())
    assert json.loads((side / "probe" / "info.json").read_text())["kernels"] == "reference"
    outputs = np.load(side / "probe" / "outputs.npy")
    assert np.array_equal(outputs, np.load(side / "probe" / "outputs_reference.npy"))
    assert np.array_equal(np.load(side / "probe" / "outputs_default.npy"),
                          np.load(x86_run / "sides" / "x86-litert" / "probe" / "outputs.npy"))
    litert = json.loads((x86_run / "sides" / "x86-litert" / "side.json").read_text())
    assert litert["kernels"] == "default" and "--reference-kernels" not in sum(
        (command["argv"] for command in litert["commands"].values()), [])


def test_an_identical_emulated_side_passes(x86_run, tmp_path, capsys):
    out = as_emulated(x86_run, tmp_path)
    assert report_main(["--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    (figures,) = report["comparisons"]
    assert report["passed"] and figures["top1_agreement"] == 1.0 and figures["int8_identical"]
    assert figures["frames_emulated"] == figures["frames_reference"] == 2
    assert figures["int8_max_step_to_x86_default_kernels"] == 0 and figures["x86_kernels"] == "default"
    assert isinstance(figures["int8_max_step_to_x86_reference_kernels"], int)  # reported, not judged
    table = (out / "report.md").read_text()
    assert "| cortex-a72 (part 0xd08) | litert | 1.00 of 4 |" in table
    assert "bit-identical to x86 default kernels (2 tensors; to x86 reference: " in table


def test_an_emulated_tflite_runtime_side_that_matches_x86_reference_kernels_passes(x86_run, tmp_path):
    out = as_emulated(x86_run, tmp_path, interpreter="tflite-runtime")
    shutil.rmtree(out / "sides" / "x86-litert")
    assert report_main(["--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    (figures,) = report["comparisons"]
    assert figures["x86_kernels"] == "reference" and figures["int8_identical"]
    assert figures["int8_max_step_to_x86_reference_kernels"] == 0
    steps = report["x86_default_vs_reference_kernels_int8_max_step"]["tflite-runtime"]
    assert isinstance(steps, int) and figures["int8_max_step_to_x86_default_kernels"] == steps  # reported only
    table = (out / "report.md").read_text()
    assert "bit-identical to x86 reference kernels" in table
    assert "x86 default vs reference kernels, int8 output (reported, not judged): tflite-runtime" in table


def _edit_lines(path: Path, change) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    change(rows)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _one_int8_step(side: Path) -> None:
    outputs = np.load(side / "probe" / "outputs.npy")
    outputs[1, 7] = outputs[1, 7] + 1 if outputs[1, 7] < 127 else 126
    np.save(side / "probe" / "outputs.npy", outputs)


def _other_kernels(side: Path) -> None:
    info = json.loads((side / "probe" / "info.json").read_text())
    info["kernels"] = "reference"  # a "Pi" that ran the reference kernels proves nothing about the default ones
    (side / "probe" / "info.json").write_text(json.dumps(info))


def _flip_verdict(side: Path) -> None:
    def flip(rows):
        rows[0]["same"] = not rows[0]["same"]
    _edit_lines(side / "verify.out", flip)


def _drop_frame(side: Path) -> None:
    _edit_lines(side / "video.out", lambda rows: rows.pop())


def _other_listing(side: Path) -> None:
    listing = json.loads((side / "list.out").read_text())
    listing["count"] += 1
    (side / "list.out").write_text(json.dumps(listing))


def _other_top1(count: int):
    def change(side: Path) -> None:
        def swap(rows):
            for row in rows[:count]:  # the second-best match becomes the best: another class or item
                row["matches"][0], row["matches"][1] = row["matches"][1], row["matches"][0]
        _edit_lines(side / "search.out", swap)
    return change


def _worse_p5(side: Path) -> None:
    # x86 gets every match right, the emulated side the same items with two queries' labels wrong
    truth = dict(inputs.read_plan(side.parent.parent / "inputs").images)
    def relabel(wrong: int):
        def change(rows):
            for number, row in enumerate(rows):
                for match in row["matches"]:
                    match["label"] = truth[row["query"]] if number >= wrong else "not-" + truth[row["query"]]
        return change
    _edit_lines(side.parent / f"x86-{side.name.split('-', 1)[1]}" / "search.out", relabel(0))
    _edit_lines(side / "search.out", relabel(2))


def _other_cpu(side: Path) -> None:
    info = json.loads((side / "probe" / "info.json").read_text())
    info["cpu"] = {"model name": "AMD EPYC"}  # the profile's cpuinfo did not reach the guest
    (side / "probe" / "info.json").write_text(json.dumps(info))


def _crashed_search(side: Path) -> None:
    record = json.loads((side / "side.json").read_text())
    record["commands"]["search"]["rc"] = -11
    (side / "side.json").write_text(json.dumps(record))
    (side / "search.out").write_text("")


DOCTORS = [
    (_one_int8_step, "raw model outputs differ on identical inputs (max step 1"),
    (_flip_verdict, "verification verdicts differ"),
    (_drop_frame, "video frames: 1 on a72-{0}, 2 on x86"),
    (_other_listing, "the gallery listings differ"),
    (_other_top1(1), "top-1 agreement 0.750 < 0.8 (4 queries)"),  # 3 of 4 agree
    (_worse_p5, "P@5 dropped by 0.500 > 0.05"),
    (_other_cpu, "saw CPU part None, not the profile's 0xd08"),
    (_crashed_search, "search exited -11 on a72-{0}, 0 on x86-{0}"),
    (_other_kernels, "a72-{0} ran the default/reference kernels, not the default ones"),
]


@pytest.mark.parametrize("interpreter", ["litert", "tflite-runtime"])
@pytest.mark.parametrize("doctor, reason", DOCTORS)
def test_a_doctored_emulated_side_fails(x86_run, tmp_path, doctor, reason, interpreter):
    out = as_emulated(x86_run, tmp_path, interpreter=interpreter)
    doctor(out / "sides" / f"a72-{interpreter}")
    assert report_main(["--out", str(out)]) == 1
    failures = json.loads((out / "report.json").read_text())["failures"]
    assert any(reason.format(interpreter) in text for text in failures), failures


def test_an_x86_tflite_runtime_side_with_its_default_kernels_fails(x86_run, tmp_path):
    # the old comparison: x86's optimised kernels as the yardstick for an arm64 tflite-runtime
    out = as_emulated(x86_run, tmp_path, interpreter="tflite-runtime")
    x86 = out / "sides" / "x86-tflite-runtime"
    record = json.loads((x86 / "side.json").read_text())
    record["kernels"] = "default"
    (x86 / "side.json").write_text(json.dumps(record))
    failures = build_report(out)["failures"]
    assert any("x86-tflite-runtime ran the default/reference kernels, not the reference ones" in text
               for text in failures), failures


def test_a_missing_x86_side_fails(x86_run, tmp_path):
    out = as_emulated(x86_run, tmp_path)
    shutil.rmtree(out / "sides" / "x86-litert")
    report = build_report(out)
    assert not report["passed"] and "no x86 side for litert" in report["failures"][0]


def test_cpu_profiles_and_their_cpuinfo():
    a72, a76 = parse_profiles("a72,a76")
    text = cpuinfo_text(a76, cpus=4)
    assert text.count("CPU part\t: 0xd0b") == 4 and "asimddp" in text and "Raspberry Pi 5" in text
    assert "0xd08" in cpuinfo_text(a72, cpus=1) and a72.qemu_cpu == "cortex-a72"
    with pytest.raises(ValueError, match="unknown CPU profile"):
        parse_profiles("a53")


def test_wheel_tags_reach_bookworms_glibc_only():
    tags = platform_tags("aarch64")
    assert "manylinux_2_27_aarch64" in tags and "manylinux2014_aarch64" in tags
    assert "manylinux_2_36_aarch64" in tags and "manylinux_2_37_aarch64" not in tags


def test_a_proc_link_is_replaced_without_touching_its_target(tmp_path):
    host_proc = tmp_path / "host-proc"
    host_proc.mkdir()
    (host_proc / "cpuinfo").write_text("the host's")
    root = tmp_path / "root"
    root.mkdir()
    (root / "proc").symlink_to(host_proc)  # what debootstrap leaves in a container
    rootfs.write_cpuinfo(root, PROFILES["a72"])
    assert (host_proc / "cpuinfo").read_text() == "the host's"
    assert not (root / "proc").is_symlink() and "0xd08" in (root / "proc" / "cpuinfo").read_text()


def test_the_plan_is_deterministic_and_alternates_pairs():
    rows = [(f"/d/{label}/{index}.jpg", label) for label in ("a", "b", "c") for index in range(5)]
    plan = inputs.make_plan(rows, images=6, pairs=4, frames=3, tensors=2)
    assert plan == inputs.make_plan(list(reversed(rows)), images=6, pairs=4, frames=3, tensors=2)
    assert [label for _, label in plan.images] == ["a", "b", "c", "a", "b", "c"]
    assert [same for _, _, same in plan.pairs] == [True, False, True, False]
    assert not set(plan.frames) & {path for path, _ in plan.images} and plan.tensors == [p for p, _ in plan.images[:2]]
    with pytest.raises(ValueError, match="need at least 20"):
        inputs.make_plan(rows, images=16, pairs=1, frames=4, tensors=1)
