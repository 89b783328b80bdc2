"""Gleitzeit plugin for Ollama: model-aware hub, llm/v1 provider and an Ollama simulator."""
