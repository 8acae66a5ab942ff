"""Quality evaluation, load replay and end-to-end benchmarks."""
