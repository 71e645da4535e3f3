"""Speed and robustness figures for BENCHMARKS.md (bench/results/*.json) and the runs that make them."""
