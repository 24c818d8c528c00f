"""``python -m bottega.cli``: the same as the ``bottega`` console script."""

from bottega.cli import main

main()
