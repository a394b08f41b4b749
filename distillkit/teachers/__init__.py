"""Teacher sources (frozen, EMA, snapshots, ensemble, sharded) and the caches that wrap them."""
