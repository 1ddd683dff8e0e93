"""Races run both against the session's nats-server and on a 3-node cluster with a replicated
stream: each module holds one race and the replay that checks it; the test modules call them."""
