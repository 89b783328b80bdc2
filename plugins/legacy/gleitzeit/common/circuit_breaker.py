"""Phase 1.2 path: ``from gleitzeit.common.circuit_breaker import CircuitBreaker`` (one
breaker plugin breaker per resource id; the half-open budget always enforced)."""

from gleitzeit_legacy.common import CircuitBreaker, CircuitOpenError, CircuitState

__all__ = ["CircuitBreaker", "CircuitOpenError", "CircuitState"]
