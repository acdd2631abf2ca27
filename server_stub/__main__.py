"""`python -m server_stub` runs the same command as `ferry-server`."""

from __future__ import annotations

import sys

from server_stub.cli import main

if __name__ == "__main__":
    sys.exit(main())
