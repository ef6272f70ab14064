"""The device commands through main(argv), on a real int8 bundle, real Annoy files and real video."""

import json
import shutil
import struct
import zlib

import cv2
import numpy as np
import pytest

from conftest import CLASS_STYLES, make_class_folder, synthetic_image, write_rgb
from edge.gallery.__main__ import main as gallery_main
from edge.gallery.store import load_gallery
from edge.metrics import precision_at_k
from edge.search import main as search_main
from edge.verify import main as verify_main


def _test_images(bundle):
    data = bundle.parent / "data"
    lines = (bundle / "split" / "test.txt").read_text().splitlines()
    return [(data / line.split("\t")[0], line.split("\t")[1]) for line in lines]


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_image_search_json_reproduces_export_p_at_5(tiny_bundle, capsys):
    images = _test_images(tiny_bundle)
    argv = ["--bundle", str(tiny_bundle), "--image", *[str(p) for p, _ in images], "--json", "--k", "5"]
    assert search_main(argv) == 0
    lines = _json_lines(capsys.readouterr().out)
    assert [line["query"] for line in lines] == [str(p) for p, _ in images]
    first = lines[0]["matches"][0]
    assert set(first) == {"label", "path", "distance", "similarity", "score"}
    assert first["distance"] == pytest.approx(1 - first["similarity"], abs=1e-5)
    # ranked by score: the similarity itself, or blended with the label's vote when the gallery fitted one
    for line in lines:
        scores = [m["score"] for m in line["matches"]]
        assert scores == sorted(scores, reverse=True)
    ranked = np.array([[m["label"] for m in line["matches"]] for line in lines])
    from_json = precision_at_k(ranked, np.array([label for _, label in images]), 5)
    report = json.loads((tiny_bundle / "fidelity.json").read_text())
    assert from_json == pytest.approx(report["device"]["gallery_search"]["precision@5"], abs=1e-9)


def _write_video(path, frames, size=(64, 48)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.resize(frame, size))
    writer.release()


def test_video_file_as_camera_gives_one_line_per_processed_frame(tiny_bundle, tmp_path, capsys):
    frames = [cv2.cvtColor(synthetic_image(style, seed=i), cv2.COLOR_RGB2BGR)
              for i, style in enumerate(list(CLASS_STYLES.values()) * 4)]
    video = tmp_path / "camera.avi"
    _write_video(video, frames)
    argv = ["--bundle", str(tiny_bundle), "--camera", str(video), "--headless", "--json", "--every", "2", "--k", "3"]
    assert search_main(argv) == 0
    lines = _json_lines(capsys.readouterr().out)
    assert [line["query"] for line in lines] == [0, 2, 4, 6, 8, 10]
    assert all(len(line["matches"]) == 3 for line in lines)
    assert search_main(argv + ["--max-frames", "2"]) == 0
    assert len(_json_lines(capsys.readouterr().out)) == 2


def test_camera_errors_are_clear(tiny_bundle, tmp_path, capsys):
    assert search_main(["--bundle", str(tiny_bundle), "--camera", str(tmp_path / "none.mp4"), "--headless"]) == 2
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video at all" * 10)
    assert search_main(["--bundle", str(tiny_bundle), "--camera", str(broken), "--headless"]) == 2
    err = capsys.readouterr().err
    assert "could not open video file" in err or "no readable frames" in err
    assert "Traceback" not in err


def test_verify_identical_and_different(tiny_bundle, capsys):
    (first, _), (second, _) = _test_images(tiny_bundle)[:2]
    assert verify_main(["--bundle", str(tiny_bundle), str(first), str(first), "--threshold", "1e-6"]) == 0
    assert capsys.readouterr().out.startswith("same (distance 0.0000")
    # Threshold 0: only identical embeddings are "same", so two different images are different.
    assert verify_main(["--bundle", str(tiny_bundle), str(first), str(second), "--threshold", "0", "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["same"] is False and verdict["threshold"] == 0.0 and verdict["distance"] > 0


def test_verify_uses_the_gallery_threshold_then_the_manifest_and_pairs_csv(tiny_bundle, bundle_copy, tmp_path, capsys):
    (a, _), (b, _) = _test_images(tiny_bundle)[:2]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"a,b,same\n{a},{a},1\n{a},{b},0\n")
    assert verify_main(["--bundle", str(bundle_copy), "--pairs", str(pairs)]) == 0
    out = capsys.readouterr()
    rows = out.out.strip().splitlines()
    calibration = load_gallery(bundle_copy / "gallery").calibration
    assert calibration.source == "gallery"  # the exported gallery calibrated itself
    assert rows[0] == "a,b,same,distance,threshold,source" and len(rows) == 3
    assert rows[1].split(",")[2] == "1" and rows[1].split(",")[5] == "gallery"
    assert float(rows[1].split(",")[4]) == pytest.approx(calibration.pair_threshold, abs=1e-6)
    assert "labelled pairs" in out.err
    # Without a gallery the manifest's threshold applies, and the output says so.
    shutil.rmtree(bundle_copy / "gallery")
    assert verify_main(["--bundle", str(bundle_copy), "--pairs", str(pairs)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    threshold = json.loads((bundle_copy / "manifest.json").read_text())["verification"]["threshold"]
    assert rows[1].split(",")[5] == "manifest" and float(rows[1].split(",")[4]) == pytest.approx(threshold, abs=1e-6)


def _huge_png(path):
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + crc)
    return path


@pytest.mark.parametrize("kind", ["corrupt_jpeg", "zero_byte", "text_as_jpeg", "one_pixel", "huge", "missing"])
def test_bad_images_exit_nonzero_with_a_message(tiny_bundle, bad_files, tmp_path, kind, capsys):
    path = {"huge": lambda: _huge_png(tmp_path / "huge.png"), "missing": lambda: tmp_path / "gone.jpg"}.get(
        kind, lambda: bad_files[kind])()
    assert search_main(["--bundle", str(tiny_bundle), "--image", str(path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(path) in err and "Traceback" not in err
    assert verify_main(["--bundle", str(tiny_bundle), str(path), str(bad_files["good_jpeg"])]) == 2


@pytest.mark.parametrize("kind", ["gray_png", "rgba_png", "png16"])
def test_gray_rgba_and_16_bit_images_are_searched(tiny_bundle, bad_files, kind, capsys):
    assert search_main(["--bundle", str(tiny_bundle), "--image", str(bad_files[kind]), "--json"]) == 0
    assert len(_json_lines(capsys.readouterr().out)[0]["matches"]) == 5


def test_missing_bundle_and_foreign_gallery_are_refused(tiny_bundle, bundle_copy, bad_files, tmp_path, capsys):
    image = str(bad_files["good_jpeg"])
    assert search_main(["--bundle", str(tmp_path / "nowhere"), "--image", image]) == 2
    assert "no bundle at" in capsys.readouterr().err
    # a gallery built by another model: its recorded model hash differs from the bundle's
    version = next(bundle_copy.glob("gallery/v-*"))
    info = json.loads((version / "gallery.json").read_text())
    info["model_sha256"] = "0" * 64
    (version / "gallery.json").write_text(json.dumps(info))
    assert search_main(["--bundle", str(bundle_copy), "--image", image]) == 2
    err = capsys.readouterr().err
    assert "gallery was built with model sha256 000000000000" in err and "Traceback" not in err


def test_enrol_unseen_classes_then_remove(bundle_copy, tmp_path, capsys):
    new = tmp_path / "new"
    for i in range(3):
        image = np.full((48, 48, 3), (30 + 60 * i, 200 - 50 * i, 90), np.uint8)
        cv2.putText(image, "X", (10, 35), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        write_rgb(new / "plates" / f"p{i}.jpg", image)
        write_rgb(new / "mugs" / f"m{i}.png", np.roll(image, 7 * i, axis=1)[:, :, ::-1].copy())
    (new / "mugs" / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    before = len((bundle_copy / "split" / "train.txt").read_text().splitlines())
    assert gallery_main(["add", "--bundle", str(bundle_copy), str(new)]) == 0
    out = capsys.readouterr()
    assert f"added 6 images; skipped 0 duplicates, 1 failed; gallery now holds {before + 6}" in out.out
    assert "failed mugs/broken.jpg" in out.err
    # immediately searchable: an enrolled image finds itself, labelled, at distance ~0
    assert search_main(["--bundle", str(bundle_copy), "--image", str(new / "plates" / "p1.jpg"), "--json", "--exact"]) == 0
    best = _json_lines(capsys.readouterr().out)[0]["matches"][0]
    assert best["label"] == "plates" and best["path"] == "plates/p1.jpg" and best["distance"] < 1e-5
    assert gallery_main(["list", "--bundle", str(bundle_copy), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["labels"]["plates"] == 3 and listing["labels"]["mugs"] == 3
    assert gallery_main(["remove", "--bundle", str(bundle_copy), "plates"]) == 0
    assert gallery_main(["list", "--bundle", str(bundle_copy), "--json"]) == 0
    assert "plates" not in json.loads(capsys.readouterr().out.splitlines()[-1])["labels"]
    assert gallery_main(["remove", "--bundle", str(bundle_copy), "plates"]) == 2
    assert "not in the gallery" in capsys.readouterr().err


def test_add_files_with_label_and_build_from_folder(bundle_copy, tmp_path, capsys):
    image = write_rgb(tmp_path / "one.jpg", synthetic_image(CLASS_STYLES["squares"], 99))
    assert gallery_main(["add", "--bundle", str(bundle_copy), "--label", "special", str(image)]) == 0
    capsys.readouterr()
    folder = make_class_folder(tmp_path / "fresh", per_class=2, size=40, classes=["circles", "stripes"])
    assert gallery_main(["build", "--bundle", str(bundle_copy), str(folder), "--trees", "4"]) == 0
    assert "gallery now holds 4" in capsys.readouterr().out
    thumbs = list((bundle_copy / "gallery" / "thumbs").glob("*.jpg"))
    assert len(thumbs) == 4  # old thumbnails pruned with the old gallery
    assert gallery_main(["add", "--bundle", str(bundle_copy), "--label", "x", str(tmp_path / "nope.jpg")]) == 2


def test_edgetpu_delegate_without_libedgetpu_is_a_clear_error(tiny_bundle, bad_files, capsys):
    argv = ["--bundle", str(tiny_bundle), "--delegate", "edgetpu", "--image", str(bad_files["good_jpeg"])]
    assert search_main(argv) == 2
    err = capsys.readouterr().err
    assert "libedgetpu" in err and "Traceback" not in err


def test_missing_camera_device_exits_2(tiny_bundle, capsys):
    assert search_main(["--bundle", str(tiny_bundle), "--camera", "7", "--headless"]) == 2
    assert "could not open camera 7" in capsys.readouterr().err
