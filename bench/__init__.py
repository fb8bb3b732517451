"""jobrelay's benchmarks: each figure measured next to its comparison in the same run.

`make bench` (or `python -m bench`) prints one table and writes `bench/results.json`. Not
part of the test run: timing is never asserted in tests.
"""
