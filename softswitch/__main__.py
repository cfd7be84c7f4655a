"""``python -m softswitch``: same as the ``softswitch`` console script."""

from softswitch.cli import main

raise SystemExit(main())
