"""The trust boundary at the broker: NATS operator-mode keys, accounts and credentials, the
permissions each role gets, and who sent a request (as the broker says, never the client)."""
