"""Where run state lives: the `StateBackend` protocol, local SQLite, the journal and its sync."""
