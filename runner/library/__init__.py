"""Library-level tools: what works across many per-track results (a summary, a table, a
search), on top of the batch engine (runner.batch)."""
