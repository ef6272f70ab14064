"""The benchmark report generator on a small saved pytest-benchmark JSON with known numbers."""

import pytest

from benchmarks.report import build_report, load, main
from conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "tests" / "data" / "bench_sample.json"


def test_ratios_and_targets_from_known_numbers():
    text, figures = build_report(load(SAMPLE))
    assert figures["e2e_ratio"] == pytest.approx(7.7 / 7.0)
    # peak = 2 x 2.5 x 32 = 160 GFLOP/s; best float32 6.0 ms -> 100 GFLOP/s = 62.5 %
    assert figures["peak_fraction"] == pytest.approx(0.625)
    assert figures["encoder_ratios"]["int8 / float32 latency, 1 thread(s)"] == pytest.approx(12.8 / 10.7)
    assert figures["encoder_ratios"]["float32@224: XNNPACK off / on (1 thread)"] == pytest.approx(39 / 10.7)
    # the fastest Annoy setting with recall >= 0.95 is search_k 4000: 1.0 / 3.5 ms
    assert figures["search_100k_ratio"] == pytest.approx(1.0 / 3.5)
    assert "| end to end <= 1.15 x encoder | 1.10 x | yes |" in text
    assert "| search at 100k <= 0.1 x exact at recall@10 >= 0.95 | 0.286 x" in text and "| no |" in text
    assert "| cold start <= 1 s | 0.80 s | yes |" in text
    assert "2 cores x 2.500 GHz x 32 FP32 FLOP/cycle" in text


def test_main_writes_markdown_and_plots(tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    assert main(["--json", str(SAMPLE), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Benchmark results")
    assert (tmp_path / "search_latency.png").stat().st_size > 1000
    assert (tmp_path / "encoder_variants.png").stat().st_size > 1000
    assert main(["--json", str(tmp_path / "missing.json"), "--out", str(out)]) == 2


def test_live_loop_rows_from_known_numbers():
    from benchmarks.report import build_report

    def bench(name, group, ms, **extra):
        return {"name": name, "group": group, "stats": {"median": ms / 1000.0}, "extra_info": extra}

    live = dict(threads=1, encoder_ms=30.0, frames_processed=90, frames_skipped=90, latency_p50_ms=40.0,
                latency_p95_ms=70.0, bound_ms=63.3, embed_p50_ms=31.0, embed_p95_ms=40.0)
    data = {"benchmarks": [bench("enc", "end-to-end", 10.0, role="encoder-only"),
                           bench("live", "end-to-end", 10.5, role="live-inference"),
                           bench("part", "frame-parts", 1.6, part="resize"),
                           bench("lat", "live", 6000.0, **live)]}
    text, figures = build_report(data)
    assert figures["live_ratio"] == 1.05 and "| live loop: inference thread <= 1.15 x encoder | 1.05 x | yes |" in text
    assert "| live latency p95 <= encoder + 1 frame interval | 70.0 ms (bound 63.3 ms) | no |" in text
    assert "| resize | 1.600 | capture thread |" in text and "| embed | 31.00 | 40.00 |" in text
