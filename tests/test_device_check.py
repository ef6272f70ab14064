"""make device-check's verdict, on x86 only: a real x86 run of the edge commands on the tiny bundle,
copied as if an emulated Pi had produced it, passes; each doctored copy fails with its reason.

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
from benchmarks.device_check.profiles import PROFILES, cpuinfo_text, parse_profiles
from benchmarks.device_check.report import build_report, main as report_main
from benchmarks.device_check.sites import platform_tags


@pytest.fixture(scope="module")
def x86_run(tiny_bundle, tiny_data, tmp_path_factory) -> Path:
    """A results folder with one real x86 side (the commands on the tiny bundle, this venv's packages)."""
    out = tmp_path_factory.mktemp("device-check")
    bundle = out / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    plan = inputs.make_plan(inputs.read_split(bundle, tiny_data), images=4, pairs=2, frames=2, tensors=2)
    inputs.write_plan(plan, out / "inputs")
    assert prepare.main(["--bundle", str(bundle), "--plan", str(out / "inputs")]) == 0
    side = runner.Side("x86-litert", "x86_64", "litert", Path(sysconfig.get_paths()["purelib"]), None, [sys.executable])
    commands = runner.edge_commands(bundle, out / "inputs", [path for path, _ in plan.images], len(plan.frames))
    probe = ["-m", "benchmarks.device_check.probe", "--bundle", str(bundle), "--inputs", str(out / "inputs"),
             "--out", str(out / "sides" / side.key / "probe"), "--reference-kernels"]
    record = runner.run_side(side, commands, probe, out / "sides" / side.key, log=lambda text: None)
    assert all(command["rc"] == 0 for command in record["commands"].values()), record
    return out


def as_emulated(x86_run: Path, tmp_path: Path, profile: str = "a72") -> Path:
    """A copy of the run whose x86 side also appears, unchanged, as the emulated ``profile`` side."""
    out = tmp_path / "run"
    shutil.copytree(x86_run, out)
    emulated = out / "sides" / f"{profile}-litert"
    shutil.copytree(out / "sides" / "x86-litert", emulated)
    record = json.loads((emulated / "side.json").read_text())
    record.update(key=emulated.name, arch="aarch64", profile=profile, qemu_cpu=PROFILES[profile].qemu_cpu)
    (emulated / "side.json").write_text(json.dumps(record))
    info = json.loads((emulated / "probe" / "info.json").read_text())
    info["cpu"] = {"CPU part": PROFILES[profile].part}
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
    assert json.loads((side / "probe" / "info.json").read_text())["interpreter"] == "ai_edge_litert"


def test_an_identical_emulated_side_passes(x86_run, tmp_path, capsys):
    out = as_emulated(x86_run, tmp_path)
    assert report_main(["--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    (figures,) = report["comparisons"]
    assert report["passed"] and figures["top1_agreement"] == 1.0 and figures["int8_identical"]
    assert figures["frames_emulated"] == figures["frames_reference"] == 2
    assert isinstance(figures["int8_max_step_to_x86_reference_kernels"], int)  # reported, not judged
    assert "| cortex-a72 (part 0xd08) | litert | 1.00 of 4 |" in (out / "report.md").read_text()


def _edit_lines(path: Path, change) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    change(rows)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _one_int8_step(side: Path) -> None:
    outputs = np.load(side / "probe" / "outputs.npy")
    outputs[1, 7] = outputs[1, 7] + 1 if outputs[1, 7] < 127 else 126
    np.save(side / "probe" / "outputs.npy", outputs)


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
    _edit_lines(side.parent / "x86-litert" / "search.out", relabel(0))
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


@pytest.mark.parametrize("doctor, reason", [
    (_one_int8_step, "raw model outputs differ on identical inputs (max step 1"),
    (_flip_verdict, "verification verdicts differ"),
    (_drop_frame, "video frames: 1 on a72-litert, 2 on x86"),
    (_other_listing, "the gallery listings differ"),
    (_other_top1(1), "top-1 agreement 0.750 < 0.8 (4 queries)"),  # 3 of 4 agree
    (_worse_p5, "P@5 dropped by 0.500 > 0.05"),
    (_other_cpu, "saw CPU part None, not the profile's 0xd08"),
    (_crashed_search, "search exited -11 on a72-litert, 0 on x86-litert"),
])
def test_a_doctored_emulated_side_fails(x86_run, tmp_path, doctor, reason):
    out = as_emulated(x86_run, tmp_path)
    doctor(out / "sides" / "a72-litert")
    assert report_main(["--out", str(out)]) == 1
    failures = json.loads((out / "report.json").read_text())["failures"]
    assert any(reason in text for text in failures), failures


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
