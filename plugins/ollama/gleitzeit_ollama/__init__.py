"""Gleitzeit plugin for Ollama: model-aware hub, llm/v1 provider and an Ollama simulator.

Other distributions that declare this plugin as a dependency (the legacy shim, through its
``[ollama]`` extra) use only ``gleitzeit_ollama.api``; this package file imports nothing, so
loading the plugin's hooks stays cheap.
"""
