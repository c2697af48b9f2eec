"""Benchmarks of the pipeline (make bench): every figure measured in the run, every comparison a ratio against a baseline of the same run."""
