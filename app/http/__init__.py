"""Shared HTTP machinery: who is calling, the request context, idempotent actions, the
hand-read posting route, problem responses, the edge middleware and the probes."""
