#!/usr/bin/env python3
"""A minimal jigasi-like MUC occupant that echoes the conference audio (see emulator/echo.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from emulator.echo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
