"""`python -m bench`: run every figure once and print the table (see bench/run.py)."""

import sys

from bench.run import main

try:
    raise SystemExit(main())
except KeyboardInterrupt:
    print("interrupted; servers and PostgreSQL were stopped", file=sys.stderr)
    raise SystemExit(130) from None
