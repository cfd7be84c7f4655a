"""``python -m softswitch``: same as the ``softswitch`` console script."""

from softswitch.cli import main

if __name__ == "__main__":  # not when a spawned ASR worker process imports the main module
    raise SystemExit(main())
