"""`python -m bridge` is the `partnero-bridge` command."""

from bridge.cli import main

raise SystemExit(main())
