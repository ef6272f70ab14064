"""The parts of ``python -m edge.bench`` (edge/bench.py): machine facts, timed measurements,
cold start in a fresh process, and the report in benchmarks/RESULTS.md's rows."""
