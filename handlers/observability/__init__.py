"""What operators see of an engine: Prometheus metrics, health and readiness over HTTP,
structured logs, and OpenTelemetry traces. It wraps the edges (requests, appends, workers,
providers) and never the pure decisions."""
