"""Command, query, tail and replay subcommands (filled in below)."""
