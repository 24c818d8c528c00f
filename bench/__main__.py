"""``python -m bench``: run one benchmark, or all of them."""

from bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
