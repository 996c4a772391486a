"""Core layer: settings, logging, errors, database, key-value store, security primitives, health."""
