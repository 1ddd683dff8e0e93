"""msgspec types: the public contract (commands, events, replies, read models)."""
