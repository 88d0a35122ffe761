"""Delivering once: the sync engine (diff against the last confirmed snapshot, the idempotency
ledger, retries, batch splitting), its store, client-side rate limits and the destinations."""
