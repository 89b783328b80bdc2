"""Settings for the whole suite."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# A shared 2-core CI machine can stall any single example for a moment; a generous deadline
# keeps hypothesis about properties, not about the machine's load.
settings.register_profile("gleitzeit", deadline=2_000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gleitzeit")
