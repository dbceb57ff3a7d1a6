"""Throughput, latency and memory benchmarks of the ingest service and the consumers.

``python -m bench`` (``make bench``) measures everything in one run and prints figures and
ratios against baselines measured in the same run; see docs/benchmarks.md.
"""
