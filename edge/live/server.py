"""The web view: ``--serve [HOST:]PORT`` on a headless device (standard library only).

    GET /              the page (edge.live.page): stream, decision, top-K with thumbnails, FPS, latency
    GET /stream.mjpg   the annotated frames as MJPEG (multipart/x-mixed-replace)
    GET /latest.json   the newest frame's result (the JSON line's fields + fps, thumbnail URLs)
    GET /snapshot.jpg  the newest annotated frame
    GET /thumbs/NAME   a gallery thumbnail (names confined to gallery/thumbs)

The inference thread only hands over references (``LiveView.publish``); JPEG encoding and
drawing happen on the request threads, once per frame however many viewers there are.
Loopback by default: another host must be named explicitly and is logged as a warning.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from edge.layout import THUMBS, UnsafePathError, confined
from edge.live.page import PAGE

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
BOUNDARY = "frame"


def parse_address(text: str) -> tuple[str, int]:
    """``"8080"`` -> (127.0.0.1, 8080); ``"0.0.0.0:8080"`` -> ("0.0.0.0", 8080)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or LOOPBACK
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--serve expects [HOST:]PORT with PORT 0..65535, got {text!r}")
    return host, int(port)


class LiveView:
    """The newest frame and result, shared between the inference thread and the web clients."""

    def __init__(self, gallery_dir: Path):
        self.thumbs = Path(gallery_dir) / THUMBS
        self._cond = threading.Condition()
        self._seq = 0
        self._image: np.ndarray | None = None
        self._record: dict = {}
        self._jpeg: tuple[int, bytes] = (0, b"")
        self.closed = False

    def publish(self, image: np.ndarray, record: dict) -> None:
        """Called by the inference loop once per result: stores references, wakes the streams."""
        with self._cond:
            self._seq += 1
            self._image, self._record = image, record
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def latest(self) -> dict:
        with self._cond:
            return dict(self._record)

    def jpeg(self, after: int = 0, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The annotated JPEG of the first frame newer than ``after`` (waits up to ``timeout``)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > after or self.closed, timeout) or self._image is None:
                return None
            seq, image, record = self._seq, self._image, self._record
            if self._jpeg[0] == seq:
                return self._jpeg
        data = encode_jpeg(annotate(image, record))
        with self._cond:
            if seq > self._jpeg[0]:
                self._jpeg = (seq, data)
        return seq, data


def annotate(image: np.ndarray, record: dict) -> np.ndarray:
    """The frame with its decision, similarity, FPS and latency written on it."""
    view = image.copy()
    top = record.get("matches") or [{}]
    label = record.get("label")
    text = f"{'unknown' if label is None else label} {top[0].get('similarity', 0.0):.2f}"
    stats = f"{record.get('fps', 0.0):.1f} FPS  {record.get('latency_ms', 0.0):.0f} ms"
    for line, y in ((text, 30), (stats, 58)):
        cv2.putText(view, line, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(view, line, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (80, 255, 80), 2, cv2.LINE_AA)
    return view


def encode_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode a {image.shape} frame as JPEG")
    return data.tobytes()


def web_record(record: dict, matches, fps: float, gallery_items: int) -> dict:
    """The JSON line's record plus what the page shows: FPS, gallery size, thumbnail URLs."""
    shown = [{**m.to_json(), "thumbnail": f"/thumbs/{m.thumbnail}" if m.thumbnail else None} for m in matches]
    return {**record, "matches": shown, "fps": round(fps, 2), "gallery_items": gallery_items}


class _Handler(BaseHTTPRequestHandler):
    view: LiveView  # set on the subclass made by serve()
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(PAGE.encode("utf-8"), "text/html; charset=utf-8")
            elif path == "/latest.json":
                self._send(json.dumps(self.view.latest()).encode("utf-8"), "application/json")
            elif path == "/snapshot.jpg":
                frame = self.view.jpeg(0, timeout=5.0)
                if frame is None:
                    self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                else:
                    self._send(frame[1], "image/jpeg")
            elif path == "/stream.mjpg":
                self._stream()
            elif path.startswith("/thumbs/"):
                self._thumbnail(path[len("/thumbs/"):])
            else:
                self.send_error(HTTPStatus.NOT_FOUND)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the viewer went away

    def _send(self, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seq = 0
        while not self.view.closed:
            frame = self.view.jpeg(seq, timeout=5.0)
            if frame is None:
                continue
            seq, data = frame
            self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                             .encode("ascii") + data + b"\r\n")
            self.wfile.flush()

    def _thumbnail(self, name: str) -> None:
        try:
            path = confined(self.view.thumbs, name, "thumbnail")
        except UnsafePathError:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        if len(Path(name).parts) != 1 or not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        self._send(path.read_bytes(), "image/jpeg", cache="max-age=3600")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        log.debug("%s %s", self.address_string(), format % args)


class WebServer:
    """A ThreadingHTTPServer for a LiveView on its own thread; a context manager."""

    def __init__(self, view: LiveView, host: str = LOOPBACK, port: int = 8080):
        if host not in (LOOPBACK, "localhost", "::1"):
            log.warning("web view on %s:%d is reachable from other machines; it has no password", host, port)
        handler = type("Handler", (_Handler,), {"view": view})
        self.view = view
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="edge-web", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> "WebServer":
        self._thread.start()
        log.info("web view at %s", self.url)
        return self

    def __exit__(self, *exc) -> None:
        self.view.close()
        self.httpd.shutdown()
        self.httpd.server_close()
