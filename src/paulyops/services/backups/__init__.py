"""Backups: the instance (database and configuration) and, later, organization exports."""
