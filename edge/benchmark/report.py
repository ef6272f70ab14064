"""The device benchmark's result as Markdown, in benchmarks/RESULTS.md's headings, rows and columns
(benchmarks/report.py writes that file; tests/test_edge_bench.py checks the headers agree)."""

from __future__ import annotations

ENCODER_HEADER = "| variant | threads | XNNPACK | median ms | images/s | model MB |"
SEARCH_HEADER = "| items | method | trees | search_k | median ms | recall@10 | vs exact | index build s |"
PARTS_HEADER = "| part of a frame | median ms | runs on |"
RUNS_ON = {"prepare": "capture thread (resize + colour)", "embed": "inference thread (input, invoke, normalise)",
           "search": "inference thread (top-k + decision)"}


def encoder_ratios(rows: list[dict]) -> list[tuple[str, float]]:
    """N threads / 1 thread for every N measured, and XNNPACK off / on when measured."""
    one = next((r for r in rows if r["threads"] == 1 and r["xnnpack"]), None)
    if one is None:
        return []
    ratios = [(f"{r['variant']}: {r['threads']} threads / 1 thread", r["median_ms"] / one["median_ms"])
              for r in rows if r["xnnpack"] and r["threads"] > 1]
    off = next((r for r in rows if r["threads"] == 1 and not r["xnnpack"]), None)
    if off:
        ratios.append((f"{off['variant']}: XNNPACK off / on (1 thread)", off["median_ms"] / one["median_ms"]))
    return ratios


def machine_lines(result: dict) -> list[str]:
    m, b = result["machine"], result["bundle"]
    clock = f", {m['mhz']:.0f} MHz" if m.get("mhz") else ""
    load = m.get("load_average")
    versions = m["versions"]
    return ["## Machine", "",
            f"- CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable){clock}, {m['machine']}, {m['python']}",
            f"- Interpreters and versions: {versions}",
            f"- OS: {m['os']}" + (f"; load average at start {load[0]} / {load[1]} / {load[2]} (1 / 5 / 15 min)"
                                  if load else ""),
            f"- Bundle: {b['path']} ({b['variant']}, {b['embedding_size']}-value embedding, "
            f"{b['gallery_items']:,} gallery items)",
            f"- Inputs: {result['settings']['inputs']}; {result['settings']['repeats']} timed runs after "
            f"{result['settings']['warmup']} warm-up runs per row, median",
            f"- Run: {result['started']}, {result['seconds']:.0f} s", ""]


def encoder_lines(rows: list[dict]) -> list[str]:
    lines = ["## Encoder latency per image (interpreter only)", "", ENCODER_HEADER, "|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['threads']} | {'on' if r['xnnpack'] else 'off'} | {r['median_ms']:.2f} | "
              f"{r['images_per_s']:.0f} | {r['model_mb']:.1f} |" for r in rows]
    ratios = encoder_ratios(rows)
    if ratios:
        lines += ["", "| ratio | value |", "|---|---|"] + [f"| {name} | {value:.2f} |" for name, value in ratios]
    return lines + [""]


def end_to_end_lines(e2e: dict) -> list[str]:
    k = e2e["k"]
    height, width = e2e["frame_shape"][:2]
    return [f"## End to end (video frame -> embedding -> top-{k}, edge.search's per-frame code)", "",
            f"{width}x{height} BGR frame, {e2e['threads']} interpreter thread(s), {e2e['gallery_items']:,} gallery "
            f"items: encoder only {e2e['encoder_only_ms']:.2f} ms, frame to top-{k} {e2e['end_to_end_ms']:.2f} ms: "
            f"ratio **{e2e['ratio']:.2f}**", "",
            f"inference thread per frame (embed + top-{k}; edge.search --camera prepares on the capture thread) "
            f"{e2e['inference_thread_ms']:.2f} ms vs encoder only {e2e['encoder_only_ms']:.2f} ms: "
            f"ratio **{e2e['live_ratio']:.2f}**", "",
            PARTS_HEADER, "|---|---|---|", f"| invoke (encoder only) | {e2e['encoder_only_ms']:.2f} | inference thread |"]\
        + [f"| {name} | {ms:.3f} | {RUNS_ON.get(name, '')} |" for name, ms in e2e["parts_ms"].items()] + [""]


def search_lines(search: dict) -> list[str]:
    lines = ["## Gallery search (one query, top-10)", "", SEARCH_HEADER, "|---|---|---|---|---|---|---|---|"]
    for r in search["rows"]:
        lines.append(f"| {r['items']:,} | {r['method']} | {r['trees'] or '-'} | {r['search_k'] or '-'} | "
                     f"{r['median_ms']:.3f} | {r['recall_at_10']:.3f} | {r['vs_exact']:.3f} | - |")
    queries = f"{search.get('queries', 0)} seeded queries (gallery items plus noise)" if search["rows"] else "no queries"
    return lines + ["", f"The bundle's own gallery (its index was built at export: no build time). {search['annoy']}; "
                        f"default: {search['default_method']}; {queries}.", ""]


def cold_start_lines(cold: dict) -> list[str]:
    embed = cold["open_and_embed"]
    return ["## Cold start and memory", "",
            f"`python -m edge.search --image` in a fresh process ({cold['python']}): median **{cold['median_s']:.2f} s** "
            f"from process start to result, peak RSS **{cold['peak_rss_mib']:.0f} MiB** ({cold['starts']} start(s) after "
            f"one warm-up start, which took {cold['first_start_s']:.2f} s).", "",
            f"`open_bundle` + first embedding alone (no gallery) in a fresh process: median {embed['median_s']:.2f} s, "
            f"peak RSS {embed['peak_rss_mib']:.0f} MiB.", ""]


def markdown(result: dict) -> str:
    """The whole report (sections left out when they were skipped)."""
    lines = ["# Device benchmark", "", f"`{result['command']}`", ""] + machine_lines(result)
    lines += encoder_lines(result["encoder"])
    if result.get("end_to_end"):
        lines += end_to_end_lines(result["end_to_end"])
    if result.get("search"):
        lines += search_lines(result["search"])
    if result.get("cold_start"):
        lines += cold_start_lines(result["cold_start"])
    return "\n".join(lines)
