"""`python -m runner` is the `ferry` command."""

from runner.cli import main

raise SystemExit(main())
