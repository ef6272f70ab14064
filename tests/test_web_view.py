"""The web view on a real server (127.0.0.1, ephemeral port) fed by a running search: the page,
two MJPEG parts of the stream, /latest.json, /snapshot.jpg and confined thumbnails."""

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import CLASS_STYLES, synthetic_image
from edge.live.server import LiveView, WebServer, parse_address
from edge.search import main as search_main

TIMEOUT = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, "", b""


def _wait_until_up(url: str, runner: threading.Thread) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and runner.is_alive():
        try:
            status, _, body = _get(url + "latest.json")
            if status == 200 and json.loads(body).get("matches"):
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    pytest.fail("the web view did not come up with a first result")


def _read_parts(url: str, count: int) -> list[bytes]:
    """Reads ``count`` JPEG parts of a multipart/x-mixed-replace stream."""
    parts = []
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
        while len(parts) < count:
            assert response.readline().strip() == b"--frame"
            headers = {}
            for line in iter(response.readline, b"\r\n"):
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            parts.append(response.read(int(headers["content-length"])))
            assert response.read(2) == b"\r\n"
    return parts


def test_page_stream_and_json_from_a_running_search(tiny_bundle, tmp_path):
    styles = list(CLASS_STYLES.values())
    video = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (160, 120))
    for i in range(400):  # 20 s at 20 fps, played in real time; the test stops it with --max-frames
        writer.write(cv2.resize(cv2.cvtColor(synthetic_image(styles[i % len(styles)], seed=i), cv2.COLOR_RGB2BGR), (160, 120)))
    writer.release()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    argv = ["--bundle", str(tiny_bundle), "--camera", str(video), "--realtime", "--headless", "--quiet",
            "--serve", str(port), "--k", "3", "--max-frames", "120"]
    result = {}
    runner = threading.Thread(target=lambda: result.update(code=search_main(argv)), daemon=True)
    runner.start()
    _wait_until_up(url, runner)

    status, kind, page = _get(url)
    assert status == 200 and kind.startswith("text/html")
    assert b'src="/stream.mjpg"' in page and b"/latest.json" in page

    parts = _read_parts(url + "stream.mjpg", 2)
    images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
    assert all(image is not None and image.shape == (120, 160, 3) for image in images)

    status, kind, body = _get(url + "latest.json")
    latest = json.loads(body)
    assert status == 200 and kind == "application/json"
    assert {"query", "label", "captured", "latency_ms", "matches", "fps", "gallery_items"} <= set(latest)
    assert len(latest["matches"]) == 3 and latest["label"] in (None, latest["matches"][0]["label"])
    assert 0 <= latest["latency_ms"] < 10_000 and abs(time.time() - latest["captured"]) < 60

    thumb = latest["matches"][0]["thumbnail"]
    status, kind, data = _get(url.rstrip("/") + thumb)
    assert status == 200 and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    for bad in ("thumbs/../../manifest.json", "thumbs/%2e%2e/CURRENT", "thumbs/", "nothing"):
        assert _get(url + bad)[0] == 404

    status, kind, snapshot = _get(url + "snapshot.jpg")
    assert status == 200 and kind == "image/jpeg" and snapshot[:2] == b"\xff\xd8"
    runner.join(60)
    assert result == {"code": 0}


def test_serve_address_is_loopback_unless_a_host_is_given(caplog):
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:0") == ("0.0.0.0", 0)
    for bad in ("http", "1:99999", ""):
        with pytest.raises(ValueError, match=r"\[HOST:\]PORT"):
            parse_address(bad)
    view = LiveView(Path("."))
    with caplog.at_level(logging.WARNING, logger="edge.live.server"):
        with WebServer(view, "127.0.0.1", 0):
            pass
        assert not caplog.records
        with WebServer(view, "0.0.0.0", 0):
            pass
    assert "reachable from other machines" in caplog.text


def test_bad_serve_value_is_an_argument_error(tiny_bundle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        search_main(["--bundle", str(tiny_bundle), "--camera", "x.mp4", "--serve", "localhost"])
    assert exit_info.value.code == 2 and "[HOST:]PORT" in capsys.readouterr().err
