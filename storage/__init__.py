"""Storage: the job ledger and catalog (SQLite embedded, PostgreSQL in production)."""
