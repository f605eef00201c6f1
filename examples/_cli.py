"""What every example's command line shares: how a bad one ends.

The scripts run as ``python examples/<name>.py``, which puts this directory on ``sys.path``.
"""

from __future__ import annotations

import sys
from typing import NoReturn


def usage_error(prog: str, message: str) -> NoReturn:
    """A bad command line: ``PROG: error: MESSAGE`` on stderr and exit status 2, as argparse and tyro do."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)
