"""Project scripts: contract compilation, benchmarks, dev-stack helpers."""
