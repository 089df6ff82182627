"""Benchmark harnesses and their data; `optimum-cli dynexec benchmark` runs them from a checkout."""
