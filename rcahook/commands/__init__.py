"""One module per CLI command, each with `run(**options) -> int` (the exit code)."""
