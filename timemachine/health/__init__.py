"""Backup health: what the share directories say about each Mac's Time Machine backups, as metrics and reports."""
