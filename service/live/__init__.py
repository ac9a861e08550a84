"""Live job status: Redis keyspace notifications fanned out to WebSocket and SSE clients."""
