"""Run the benchmark: `python -m bench` (exit 1 when a correctness check fails).

`python -m bench audit [--help]` runs the audit log's benchmark instead (bench/audit.py), and
`python -m bench linking [--help]` the identity linking benchmark (bench/linking.py), and
`python -m bench education [--help]` the attendance CSV import benchmark (bench/education.py), and
`python -m bench policy [--help]` the policy engine's (bench/policy.py).
"""

import sys
import warnings

# Starlette deprecates its httpx-based test client in favour of httpx2, which is not installed;
# the test helpers this benchmark reuses import it.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")

if sys.argv[1:2] == ["linking"]:
    from bench.linking import main as linking_main

    raise SystemExit(linking_main(sys.argv[2:]))

if sys.argv[1:2] == ["education"]:
    from bench.education import main as education_main

    raise SystemExit(education_main(sys.argv[2:]))

if sys.argv[1:2] == ["policy"]:
    from bench.policy import main as policy_main

    raise SystemExit(policy_main(sys.argv[2:]))

if sys.argv[1:2] == ["audit"]:
    from bench.audit import main as audit_main

    raise SystemExit(audit_main(sys.argv[2:]))

from bench.run import main  # noqa: E402  (after the filter, which must precede the import)

raise SystemExit(main())
