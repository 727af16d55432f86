"""`rcahook backtest`: replay real history under protocol v1 (shared/docs/benchmark.md)."""
