#!/usr/bin/env python3
"""Jicofo + Jitsi videobridge stand-in for end-to-end tests of the SIP gateway (see emulator/app.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from emulator.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
