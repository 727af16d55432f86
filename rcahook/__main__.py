from __future__ import annotations

from rcahook.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
