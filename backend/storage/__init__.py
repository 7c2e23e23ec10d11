"""Conversation persistence: engine and migrations, tables, repository functions, history cache."""
