"""Everything that is stored: Redis keys and writes, metrics, recovery."""
