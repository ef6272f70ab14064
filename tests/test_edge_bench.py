"""python -m edge.bench: the device benchmark, run on the real tiny int8 bundle with tiny repeat counts.

Its numbers are checked for shape and sanity only (positive, finite, consistent with each other);
speed goals live in benchmarks/, not here.
"""

import json
import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from edge.bench import default_threads, main
from edge.benchmark.machine import cpu_model
from edge.benchmark.report import ENCODER_HEADER, PARTS_HEADER, SEARCH_HEADER

FAST = ["--repeats", "3", "--warmup", "1", "--search-repeats", "5", "--quiet"]
PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

processor\t: 1
CPU part\t: 0xd08

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _table(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table that starts with ``header``, split into cells."""
    lines = text.splitlines()
    start = lines.index(header) + 2  # header, separator
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _edge_python() -> str:
    python = os.environ.get("EDGE_PYTHON") or str(REPO_ROOT / ".venv-edge" / "bin" / "python")
    if not Path(python).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must set EDGE_PYTHON to the requirements-edge.txt venv (.ci/run does)")
        pytest.skip("no device venv: set EDGE_PYTHON or make edge-venv")
    return python


def test_markdown_report_on_the_tiny_bundle(tiny_bundle, capsys):
    argv = ["--bundle", str(tiny_bundle), "--threads", "1", "2", "--xnnpack-off", "--cold-starts", "1", *FAST]
    assert main(argv) == 0
    text = capsys.readouterr().out

    encoder = _table(text, ENCODER_HEADER)
    assert [(r[1], r[2]) for r in encoder] == [("1", "on"), ("2", "on"), ("1", "off")]
    for variant, _, _, ms, per_second, mb in encoder:
        assert variant.startswith("int8@") and _positive(float(ms)) and _positive(float(mb)) and _positive(float(per_second))
        ms = float(ms)  # shown rounded to 0.01 ms, images/s to 1
        assert 1000 / (ms + 0.005) - 1 <= float(per_second) <= 1000 / max(ms - 0.005, 1e-9) + 1
    assert re.search(r"\| int8@\d+: 2 threads / 1 thread \| \d+\.\d\d \|", text)
    assert re.search(r"\| int8@\d+: XNNPACK off / on \(1 thread\) \| \d+\.\d\d \|", text)

    assert "## End to end (video frame -> embedding -> top-5, edge.search's per-frame code)" in text
    e2e = re.search(r"encoder only ([\d.]+) ms, frame to top-5 ([\d.]+) ms: ratio \*\*([\d.]+)\*\*", text)
    assert e2e and all(_positive(float(x)) for x in e2e.groups())
    assert float(e2e[3]) == pytest.approx(float(e2e[2]) / float(e2e[1]), rel=0.1)  # from unrounded times
    parts = _table(text, PARTS_HEADER)
    assert [p[0] for p in parts] == ["invoke (encoder only)", "prepare", "embed", "search"]
    assert all(_positive(float(p[1])) for p in parts)

    search = _table(text, SEARCH_HEADER)  # the tiny bundle has an Annoy index (8 trees)
    assert [(r[1], r[2]) for r in search][0] == ("exact", "-") and {r[1] for r in search[1:]} == {"annoy"}
    assert all(r[2] == "8" for r in search[1:]) and all(_positive(float(r[4])) for r in search)
    assert all(0.0 <= float(r[5]) <= 1.0 for r in search) and search[0][5] == "1.000"

    cold = re.search(r"median \*\*([\d.]+) s\*\* from process start to result, peak RSS \*\*(\d+) MiB\*\*", text)
    assert cold and _positive(float(cold[1])) and int(cold[2]) > 10  # Python + numpy + OpenCV: tens of MiB
    embed = re.search(r"first embedding alone \(no gallery\) in a fresh process: median ([\d.]+) s, peak RSS (\d+) MiB", text)
    assert embed and _positive(float(embed[1])) and int(embed[2]) > 10


def test_json_report_parses_and_every_number_is_positive(tiny_bundle, capsys):
    assert main(["--bundle", str(tiny_bundle), "--threads", "1", "--json", "--cold-starts", "1", "--k", "3", *FAST]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    result = json.loads(out)
    assert set(result) >= {"machine", "bundle", "settings", "encoder", "end_to_end", "search", "cold_start"}
    assert result["machine"]["cores"] >= 1 and result["machine"]["versions"]["numpy"]
    [row] = result["encoder"]
    assert row["threads"] == 1 and row["xnnpack"] is True and _positive(row["median_ms"])
    e2e = result["end_to_end"]
    assert e2e["k"] == 3 and e2e["frame_shape"] == [480, 640, 3] and e2e["threads"] == 1
    timings = [e2e[n] for n in ("encoder_only_ms", "end_to_end_ms", "inference_thread_ms", "ratio", "live_ratio")]
    assert all(_positive(x) for x in timings + list(e2e["parts_ms"].values()))
    assert e2e["ratio"] == pytest.approx(e2e["end_to_end_ms"] / e2e["encoder_only_ms"])
    rows = result["search"]["rows"]
    assert rows[0]["method"] == "exact" and rows[0]["vs_exact"] == 1.0
    assert all(_positive(r["median_ms"]) and 0 <= r["recall_at_10"] <= 1 for r in rows)
    assert rows[0]["items"] == result["bundle"]["gallery_items"] > 0
    cold = result["cold_start"]
    assert cold["starts"] == 1 and all(_positive(cold[n]) for n in ("median_s", "first_start_s", "peak_rss_mib"))
    assert all(_positive(cold["open_and_embed"][n]) for n in ("median_s", "peak_rss_mib"))


def test_runs_in_the_device_venv_without_tensorflow(tiny_bundle):
    python = _edge_python()
    assert subprocess.run([python, "-c", "import tensorflow"], capture_output=True).returncode != 0
    done = subprocess.run([python, "-m", "edge.bench", "--bundle", str(tiny_bundle), "--json", "--cold-starts", "1",
                           *FAST], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["cold_start"]["python"] == python and _positive(result["cold_start"]["peak_rss_mib"])
    assert all(_positive(r["median_ms"]) for r in result["encoder"])


def test_without_annoy_only_exact_search_is_measured_and_it_says_so(tiny_bundle):
    # annoy made unimportable (sys.modules entry None: `import annoy` raises ImportError), as on a
    # device installed without the `ann` extra.
    code = ("import sys; sys.modules['annoy'] = None; from edge.bench import main; "
            f"sys.exit(main({['--bundle', str(tiny_bundle), '--json', '--threads', '1', '--cold-starts', '0', *FAST]!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    search = json.loads(done.stdout)["search"]
    assert [r["method"] for r in search["rows"]] == ["exact"]
    assert "annoy is not installed" in search["annoy"]


def test_photos_folder_feeds_real_frames_and_a_bad_file_is_reported_and_skipped(tiny_bundle, tmp_path, capsys):
    """Real JPEG photos (the tiny data set's) as frames; a corrupt one is reported and skipped, and
    the run still reports, then ends with exit 2 as every edge loop past a bad item does."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted((tiny_bundle.parent / "data" / "circles").glob("*.jpg"))[:3]:
        (photos / path.name).write_bytes(path.read_bytes())
    (photos / "zz-corrupt.jpg").write_bytes((photos / path.name).read_bytes()[:20] + b"\x00" * 50)
    argv = ["--bundle", str(tiny_bundle), "--images", str(photos), "--threads", "1", "--json", "--cold-starts", "1", *FAST]
    assert main(argv) == 2
    captured = capsys.readouterr()
    settings = json.loads(captured.out)["settings"]
    assert settings["skipped_images"] == 1 and settings["inputs"].startswith("3 photos from ")
    [error] = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert "zz-corrupt.jpg" in error


def test_missing_bundle_is_one_error_line_and_exit_2(tmp_path, capsys):
    assert main(["--bundle", str(tmp_path / "nothing-here"), "--quiet"]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert captured.out == "" and len(lines) == 1
    assert lines[0].startswith("error: no bundle at") and "nothing-here" in lines[0]


def test_an_images_folder_without_images_is_one_error_line(tiny_bundle, tmp_path, capsys):
    assert main(["--bundle", str(tiny_bundle), "--images", str(tmp_path), *FAST]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: no image files (.jpg, .png, ...) below {tmp_path}"]


@pytest.mark.parametrize("flag, value", [("--threads", "0"), ("--repeats", "0"), ("--cold-starts", "-1"),
                                        ("--seed", "-1"), ("--threads", "65")])
def test_bad_numbers_are_refused_by_the_parser(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([flag, value])
    assert exit_info.value.code == 2 and flag in capsys.readouterr().err


def test_report_uses_the_headers_of_benchmarks_results():
    """Same columns as the workstation table, so a device's numbers sit beside it row for row."""
    results = (REPO_ROOT / "benchmarks" / "RESULTS.md").read_text()
    report_source = (REPO_ROOT / "benchmarks" / "report.py").read_text()
    for header in (ENCODER_HEADER, SEARCH_HEADER):
        assert header in results
    assert PARTS_HEADER.strip("| ").split(" | ")[0] in report_source and '"| part of a frame | median ms | runs on |"' \
        in report_source
    for heading in ("## Encoder latency per image (interpreter only)", "## Gallery search (one query, top-10)",
                    "## Cold start and memory", "## End to end (video frame -> embedding -> top-5, edge.search's "
                    "per-frame code)"):
        assert heading in results


def test_cpu_model_names_a_raspberry_pi_and_its_core():
    assert cpu_model(PI4_CPUINFO) == "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)"
    pi5 = PI4_CPUINFO.replace("0xd08", "0xd0b").replace("Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n", "")
    assert cpu_model(pi5, "Raspberry Pi 5 Model B Rev 1.0") == "Raspberry Pi 5 Model B Rev 1.0 (Cortex-A76)"
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
    assert cpu_model(x86) == "AMD EPYC (AuthenticAMD family 25 model 17)"


def test_default_threads_count_up_to_the_cores():
    counts = default_threads()
    assert counts[0] == 1 and counts == sorted(set(counts)) and counts[-1] <= (os.cpu_count() or 1)


def test_console_script_is_declared():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["siamese-bench"] == "edge.bench:main"
