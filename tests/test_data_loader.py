"""Bad inputs to the data loader: skipped with a warning or refused clearly, never a crash."""

import logging
import shutil

import numpy as np
import pytest

from conftest import CLASS_STYLES, make_class_folder, synthetic_image, write_rgb
from train.data import DatasetError, list_images, load_images, read_split_list, write_split_lists, split_records


def test_bad_files_are_skipped_with_a_warning(tmp_path, bad_files, caplog):
    root = make_class_folder(tmp_path / "data", per_class=4)
    for kind in ("corrupt_jpeg", "zero_byte", "text_as_jpeg", "one_pixel"):
        shutil.copy(bad_files[kind], root / "circles" / f"bad_{kind}{bad_files[kind].suffix}")
    for kind in ("gray_png", "rgba_png", "png16"):
        shutil.copy(bad_files[kind], root / "squares" / f"odd_{kind}.png")
    records, classes = list_images(root)
    with caplog.at_level(logging.WARNING):
        loaded, skipped = load_images(root, records, classes, size=32)
    skipped_names = sorted(p.split("/")[-1] for p, _ in skipped)
    assert skipped_names == sorted(
        ["bad_corrupt_jpeg.jpg", "bad_zero_byte.jpg", "bad_text_as_jpeg.jpg", "bad_one_pixel.png"]
    )
    reasons = dict(skipped)
    assert "empty file" in reasons["circles/bad_zero_byte.jpg"]
    assert "not a decodable image" in reasons["circles/bad_text_as_jpeg.jpg"]
    assert "at least" in reasons["circles/bad_one_pixel.png"]
    assert "skipping circles/bad_zero_byte.jpg" in caplog.text
    # grayscale, RGBA and 16-bit PNGs load as RGB uint8
    assert len(loaded.records) == 12 + 3
    assert loaded.clean.shape == (15, 32, 32, 3) and loaded.clean.dtype == np.uint8


def test_empty_class_folder_is_skipped_with_a_warning(tmp_path, caplog):
    root = make_class_folder(tmp_path / "data", per_class=3)
    (root / "empty_class").mkdir()
    (root / "empty_class" / "readme.txt").write_text("no images here")
    with caplog.at_level(logging.WARNING):
        _, classes = list_images(root)
    assert classes == ["circles", "squares", "stripes"]
    assert "has no images" in caplog.text


def test_one_class_is_refused(tmp_path):
    root = make_class_folder(tmp_path / "data", per_class=3, classes=["circles"])
    with pytest.raises(DatasetError, match="at least 2 classes"):
        list_images(root)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_listing_is_sorted_and_relative(tmp_path):
    root = tmp_path / "data"
    for name in ("b", "a"):
        for i in (3, 1, 2):
            write_rgb(root / name / f"{i}.jpg", synthetic_image(CLASS_STYLES["circles"], i, 16))
    records, classes = list_images(root)
    assert classes == ["a", "b"]
    assert [r.path for r in records] == ["a/1.jpg", "a/2.jpg", "a/3.jpg", "b/1.jpg", "b/2.jpg", "b/3.jpg"]


def test_split_lists_round_trip(tmp_path, class_folder):
    records, _ = list_images(class_folder)
    train, test = split_records(records, 0.2, "s")
    write_split_lists(tmp_path / "run", train, test)
    assert read_split_list(tmp_path / "run" / "split" / "train.txt") == train
    assert read_split_list(tmp_path / "run" / "split" / "test.txt") == test
