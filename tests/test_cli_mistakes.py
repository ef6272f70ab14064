"""Ordinary mistakes on the command line: each ends in one ``error:`` line and exit 2, or a clean
result; never a traceback or a signal. Every case runs the real command in a subprocess (the
signal cases need one: a SIGABRT, a broken pipe, a Ctrl-C)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from conftest import CLASS_STYLES, synthetic_image, write_rgb
from edge.layout import MANIFEST_FILE, SPLIT_DIR

REPO_ROOT = Path(__file__).resolve().parent.parent
LONG_NAME = "x" * 300 + ".jpg"


def run(module: str, *args: str, env: dict | None = None, timeout: float = 120,
        shell_pipe: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", module, *map(str, args)]
    environment = {**os.environ, **(env or {})}
    if shell_pipe:  # run through bash with pipefail so the producer's own exit code is seen
        quoted = " ".join(f"'{part}'" for part in command)
        command = ["bash", "-o", "pipefail", "-c", f"{quoted} {shell_pipe}"]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=environment)


def assert_one_error_line(result: subprocess.CompletedProcess, expected: str = "") -> str:
    """Exit 2, exactly one line with ``error:`` on stderr (argparse adds a usage line above it)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]
    return lines[0]


def assert_clean(result: subprocess.CompletedProcess, code: int = 0) -> None:
    assert "Traceback" not in result.stderr and "error:" not in result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)


def query_images(bundle: Path) -> list[Path]:
    data = bundle.parent / "data"
    return [data / line.split("\t")[0] for line in (bundle / SPLIT_DIR / "test.txt").read_text().splitlines()]


def write_video(path: Path, count: int, size=(32, 24)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    styles = list(CLASS_STYLES.values())
    frames = [cv2.resize(cv2.cvtColor(synthetic_image(styles[i % 3], seed=i), cv2.COLOR_RGB2BGR), size)
              for i in range(min(count, 30))]
    for i in range(count):
        writer.write(frames[i % len(frames)])
    writer.release()
    return path


# Bad arguments: parser.error, exit 2, no bundle needed (argparse runs before anything loads).
ARGUMENT_MISTAKES = [
    ("edge.search", ["--image", "a.jpg", "--threads", "100000"], "--threads: must be between 1 and 64"),
    ("edge.search", ["--image", "a.jpg", "--threads", "0"], "--threads: must be between 1 and 64"),
    ("edge.search", ["--image", "a.jpg", "--k", "0"], "--k: must be at least 1, got 0"),
    ("edge.search", ["--camera", "0", "--every", "-3"], "--every: must be at least 1"),
    ("edge.search", ["--camera", "0", "--max-frames", "0"], "--max-frames: must be at least 1, got 0"),
    ("edge.search", ["--image", "a.jpg", "--k", "five"], "--k: expected an integer, got 'five'"),
    ("edge.verify", ["a.jpg", "b.jpg", "--threshold", "nan"], "--threshold: must be a finite number"),
    ("edge.verify", ["a.jpg", "b.jpg", "--threshold", "-1"], "--threshold: must be a finite number in [0.0, 2.0]"),
    ("edge.verify", ["a.jpg", "b.jpg", "--threshold", "5"], "--threshold: must be a finite number in [0.0, 2.0]"),
    ("edge.verify", ["a.jpg", "b.jpg", "--threshold", "inf"], "--threshold: must be a finite number"),
    ("edge.verify", ["a.jpg"], "give exactly two images, or --pairs CSV"),
    ("edge.verify", ["a.jpg", "b.jpg", "--threads", "100000"], "--threads: must be between 1 and 64"),
    ("edge.gallery", ["list", "--threads", "100000"], "--threads: must be between 1 and 64"),
    ("export", ["--threads", "100000"], "--threads: must be between 1 and 64"),
    ("export", ["--threshold-method", "far"], "--threshold-method far needs --target-far"),
    ("export", ["--target-far", "nan"], "--target-far: must be a finite number"),
    ("train", ["--test-fraction", "2"], "test_fraction must be in (0, 1), got 2.0"),
]


@pytest.mark.parametrize("module, args, expected", ARGUMENT_MISTAKES,
                         ids=[f"{m} {' '.join(a)}" for m, a, _ in ARGUMENT_MISTAKES])
def test_bad_arguments_are_refused_by_the_parser(module, args, expected):
    line = assert_one_error_line(run(module, *args), expected)
    assert line.startswith(f"python -m {module}: error:") or module == "edge.gallery"


def test_file_name_over_255_characters(tiny_bundle, tmp_path):
    good = str(query_images(tiny_bundle)[0])
    long_path = tmp_path / LONG_NAME
    result = run("edge.search", "--bundle", tiny_bundle, "--image", long_path, good, "--json")
    assert_one_error_line(result, "File name too long")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == [str(long_path), good]  # reported, skipped, went on
    assert "error" in lines[0] and lines[1]["matches"]
    assert_one_error_line(run("edge.verify", "--bundle", tiny_bundle, long_path, good), "File name too long")
    assert_one_error_line(run("edge.verify", "--bundle", tiny_bundle, "--pairs", tmp_path / ("p" * 300 + ".csv")),
                          "File name too long")
    assert_one_error_line(run("edge.search", "--bundle", tmp_path / ("b" * 300), "--image", good),
                          "File name too long")


@pytest.mark.parametrize("mode", ["image", "camera"])
def test_output_into_head_ends_quietly(tiny_bundle, tmp_path, mode):
    if mode == "image":
        source = ["--image", *[str(query_images(tiny_bundle)[0])] * 600]  # far more than a pipe buffer holds
    else:
        source = ["--camera", str(write_video(tmp_path / "clip.avi", 600)), "--headless"]
    result = run("edge.search", "--bundle", tiny_bundle, *source, "--json", shell_pipe="| head -n 1")
    assert len(result.stdout.splitlines()) == 1 and json.loads(result.stdout)["matches"]
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert "Exception ignored" not in result.stderr and "error:" not in result.stderr
    assert result.returncode == 141  # the producer's code under pipefail: 128 + SIGPIPE, as `yes | head`


def _pairs(bundle: Path, tmp_path: Path, rows: list[str], encoding: str = "utf-8", bom: bool = False) -> Path:
    path = tmp_path / "pairs.csv"
    data = "\n".join(rows).encode(encoding) + b"\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def test_one_short_row_is_reported_and_the_rest_verified(tiny_bundle, tmp_path):
    a, b = map(str, query_images(tiny_bundle)[:2])
    pairs = _pairs(tiny_bundle, tmp_path, ["a,b,same", f"{a},{a},1", f"{a}", f"{a},{b},0"])
    result = run("edge.verify", "--bundle", tiny_bundle, "--pairs", pairs)
    assert_one_error_line(result, f"{pairs} line 3: expected values for a and b")
    rows = result.stdout.strip().splitlines()
    assert len(rows) == 3 and rows[1].startswith(f"{a},{a},1,")
    assert "accuracy" in result.stderr and "on 2 labelled pairs" in result.stderr


@pytest.mark.parametrize("encoding, bom", [("latin-1", False), ("utf-8", True), ("utf-8", False)],
                         ids=["latin-1", "excel-utf8-bom", "utf-8"])
def test_csv_encodings_give_a_clean_result(tiny_bundle, tmp_path, encoding, bom):
    source = query_images(tiny_bundle)[0]
    named = tmp_path / "café.jpg"  # the file's name on disk is UTF-8, whatever the CSV's encoding
    shutil.copy(source, named)
    pairs = _pairs(tiny_bundle, tmp_path, ["a,b,same", "café.jpg,café.jpg,yes"], encoding, bom)
    result = run("edge.verify", "--bundle", tiny_bundle, "--pairs", pairs)
    assert_clean(result)
    assert result.stdout.splitlines()[1].startswith(f"{named},{named},1,")
    assert "accuracy 1.0000 on 1 labelled pairs" in result.stderr
    assert ("not UTF-8; reading it as Latin-1" in result.stderr) == (encoding == "latin-1")


def test_same_values_are_validated(tiny_bundle, tmp_path):
    a, b = map(str, query_images(tiny_bundle)[:2])
    words = ["1", "0", "true", "FALSE", "Yes", "no", "same", "different", ""]
    rows = ["a,b,same", *[f"{a},{b},{word}" for word in words], f"{a},{b},maybe"]
    pairs = _pairs(tiny_bundle, tmp_path, rows)
    result = run("edge.verify", "--bundle", tiny_bundle, "--pairs", pairs)
    assert_one_error_line(result, f"line {len(rows)}: same is 'maybe', expected one of")
    assert len(result.stdout.strip().splitlines()) == 1 + len(words)  # every valid row verified
    assert f"on {len(words) - 1} labelled pairs" in result.stderr  # the empty one is unlabelled


def test_display_set_without_a_server_runs_headless(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "clip.avi", 6)
    display = next(f":{n}" for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    result = run("edge.search", "--bundle", tiny_bundle, "--camera", video, "--json",
                 env={"DISPLAY": display, "QT_QPA_PLATFORM": ""})
    assert_clean(result)
    assert len(result.stdout.splitlines()) == 6 and "no display found; running headless" in result.stderr


def test_video_under_dev_shm_is_a_file_not_a_live_camera(tiny_bundle):
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    video = write_video(Path("/dev/shm") / f"siamese-edge-test-{os.getpid()}.avi", 5)
    try:
        result = run("edge.search", "--bundle", tiny_bundle, "--camera", video, "--headless", "--json", timeout=60)
    finally:
        video.unlink()
    assert_clean(result)
    assert [json.loads(line)["query"] for line in result.stdout.splitlines()] == [0, 1, 2, 3, 4]  # played once


def _signal_the_camera_loop(bundle, video, signum, *extra):
    """Starts a camera search on a long video, waits for its first line, sends ``signum``."""
    process = subprocess.Popen([sys.executable, "-m", "edge.search", "--bundle", str(bundle), "--camera",
                                str(video), "--headless", "--json", *extra], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(process.stdout.readline())["matches"]  # the loop is running
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, err


def test_ctrl_c_in_the_camera_loop_exits_130(tiny_bundle, tmp_path):
    code, err = _signal_the_camera_loop(tiny_bundle, write_video(tmp_path / "long.avi", 20_000), signal.SIGINT)
    assert code == 130, err
    assert "Traceback" not in err and "stopped by Ctrl-C" in err


def test_sigterm_in_the_camera_loop_closes_everything_and_exits_143(tiny_bundle, tmp_path):
    """systemctl stop sends SIGTERM: the loop unwinds like Ctrl-C (camera, web view and watcher
    closed: the message is logged after they are) instead of dying where it stands."""
    video = write_video(tmp_path / "long.avi", 20_000)
    code, err = _signal_the_camera_loop(tiny_bundle, video, signal.SIGTERM, "--serve", "127.0.0.1:0")
    assert code == 143, err
    assert "Traceback" not in err and "stopped by SIGTERM" in err


def test_sigterm_outside_the_camera_loop_is_reported_as_terminated():
    """Every CLI goes through run_main: SIGTERM ends it with 143 and one line, the handler restored."""
    from edge.cli import EXIT_TERMINATED, run_main

    def body():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the handler long before this ends
        return 0

    assert run_main(body) == EXIT_TERMINATED
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize("change, expected", [
    (lambda m: m["input"].update(height="224"), "input.height must be an integer, got str '224'"),
    (lambda m: m.update(output=[1, 2]), "output must be a JSON object, got list"),
    (lambda m: m.update(model_file="/etc/passwd"), "model_file '/etc/passwd' must be a relative path"),
    (None, "not UTF-8 text"),
])
def test_broken_manifest_is_one_error_line(bundle_copy, change, expected):
    path = bundle_copy / MANIFEST_FILE
    values = json.loads(path.read_text())
    if change is None:
        path.write_bytes(path.read_bytes().replace(b'"eer"', b'"\xe9"'))
    else:
        change(values)
        path.write_text(json.dumps(values))
    image = write_rgb(bundle_copy.parent / "q.jpg", synthetic_image(CLASS_STYLES["circles"], seed=1))
    assert_one_error_line(run("edge.search", "--bundle", bundle_copy, "--image", image), expected)


def test_unknown_manifest_key_is_a_warning_not_an_error(bundle_copy):
    path = bundle_copy / MANIFEST_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | {"added_in_a_later_version": True}))
    image = write_rgb(bundle_copy.parent / "q.jpg", synthetic_image(CLASS_STYLES["circles"], seed=1))
    result = run("edge.search", "--bundle", bundle_copy, "--image", image)
    assert_clean(result)
    assert "added_in_a_later_version" in result.stderr and result.stdout.strip()


def test_image_bomb_is_reported_and_skipped(tiny_bundle, tmp_path):
    from test_image_bombs import webp_bomb

    bomb = tmp_path / "bomb.webp"
    bomb.write_bytes(webp_bomb())
    good = str(query_images(tiny_bundle)[0])
    result = run("edge.search", "--bundle", tiny_bundle, "--image", bomb, good)
    assert_one_error_line(result, "10000x10000")
    assert result.stdout.strip().startswith(f"{good}:")


def test_display_check_connects_to_the_server(tmp_path):
    """The positive side of the DISPLAY check: a listening X socket (unix or TCP) counts, a stale
    socket file or a closed port does not."""
    import socket

    from edge.display import x_server_answers

    folder = Path("/tmp/.X11-unix")
    created = not folder.exists()
    folder.mkdir(mode=0o1777, exist_ok=True)
    number = next(n for n in range(150, 400) if not (folder / f"X{n}").exists())
    path = folder / f"X{number}"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(path))
            server.listen(1)
            assert x_server_answers(f":{number}") and x_server_answers(f"unix:{number}.0")
        assert not x_server_answers(f":{number}")  # the file is still there, nobody listens
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            port = server.getsockname()[1]
            if port > 6000:
                assert x_server_answers(f"127.0.0.1:{port - 6000}")
        assert not x_server_answers("") and not x_server_answers("nonsense")
    finally:
        path.unlink(missing_ok=True)
        if created:
            shutil.rmtree(folder, ignore_errors=True)


def test_cli_skeleton_imports_nothing_heavy():
    """train/ and export/ import edge.cli: it must not pull in OpenCV, numpy or the interpreter."""
    code = "import sys, edge.cli; print(sorted(m for m in ('cv2', 'numpy', 'ai_edge_litert') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
