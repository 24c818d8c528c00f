"""``python -m bottega.stack.probe URL``: a container's health check.

Exits 0 when ``GET URL`` answers 2xx within the timeout, 1 otherwise. It imports only the standard
library, so a check every few seconds stays cheap, and the application image needs no curl.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def probe(url: str, *, timeout_s: float = TIMEOUT_S) -> bool:
    """True when ``GET url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Probe every URL given; 0 when all answer 2xx."""
    urls = sys.argv[1:] if argv is None else argv
    if not urls:
        return 2
    return 0 if all(probe(url) for url in urls) else 1


if __name__ == "__main__":
    sys.exit(main())
