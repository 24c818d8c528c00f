"""Bottega's benchmarks: each measures one part of the platform against a bare baseline.

``python -m bench NAME`` (or ``make bench-NAME``) runs one benchmark, writes its record to
``bench/results/NAME.json`` and regenerates ``bench/RESULTS.md``; ``python -m bench all`` runs
every benchmark. Importing this package has no side effects.
"""
