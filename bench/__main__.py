"""Run the benchmark: `python -m bench` (exit 1 when a correctness check fails)."""

import warnings

# Starlette deprecates its httpx-based test client in favour of httpx2, which is not installed;
# the test helpers this benchmark reuses import it.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")

from bench.run import main  # noqa: E402  (after the filter, which must precede the import)

raise SystemExit(main())
