# The engine image: the same install as `make install`, nothing hand-made.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY engine engine
COPY projections projections
COPY handlers handlers
COPY cli cli
RUN pip install --no-cache-dir .
# /metrics, /healthz and /readyz when started with --http-port 9090 (compose.yaml does)
EXPOSE 9090
ENTRYPOINT ["agentledger"]
CMD ["serve"]
