"""Transparency log building blocks (pure: no database, no HTTP). See docs/audit-format.md."""
