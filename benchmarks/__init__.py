"""Throughput benchmark of imgtrans-pipeline: bare loop vs Dagster job vs batched runs vs Redis intake.

Run ``python benchmarks/run.py --help`` from the repository root; see benchmarks/README.md.
"""
