"""Per-provider request verification and body -> records functions (pure)."""
