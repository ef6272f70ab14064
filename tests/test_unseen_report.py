"""export.unseen on the real tiny int8 bundle: the report's shape and that its figures are the
device's own answers (the baseline here is an untrained MobileNetV2: no ImageNet file needed)."""

import json

from export.unseen import main as unseen_main


def test_report_on_a_real_bundle_has_every_figure_within_range(tiny_bundle, tmp_path):
    out = tmp_path / "unseen.json"
    argv = ["--bundle", str(tiny_bundle), "--data-dir", str(tiny_bundle.parent / "data"), "--weights", "none",
            "--far", "0.1", "--cache", str(tmp_path / "cache"), "--out", str(out)]
    assert unseen_main(argv) == 0
    report = json.loads(out.read_text())
    gallery = report["by_far"]["0.1"]["galleries"]["enrolled_only"]
    assert gallery["gallery_items"] > 0 and gallery["queries"] > 0
    for key in ("device_precision@5", "baseline_precision@5", "baseline_with_fit_precision@5"):
        assert 0.0 <= gallery[key] <= 1.0
    for key in ("difference@5", "difference_to_baseline_with_fit@5"):
        low, high = gallery[key]["ci95"]
        assert low <= gallery[key]["difference"] <= high
    assert gallery["comparison"]["prototype_weight"] in (0.0, 0.25, 0.5, 0.75)
    assert gallery["calibration"]["source"] in ("gallery", "bundle")
    # a toy model need not reject every blank frame (the real bundles' figures are in README); the
    # report gives each open-set figure as a fraction of its queries
    assert all(0.0 <= gallery["open_set"][key] <= 1.0 for key in
               ("enrolled_accepted_correct", "enrolled_accepted_wrong", "blank_rejected"))
    assert gallery["open_set"]["enrolled_accepted_correct"] + gallery["open_set"]["enrolled_accepted_wrong"] <= 1.0
    assert list((tmp_path / "cache").glob("baseline-*.npy"))  # the baseline features were cached
