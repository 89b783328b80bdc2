"""Prometheus exposition of Gleitzeit's hubs, resources, breakers and latencies."""
