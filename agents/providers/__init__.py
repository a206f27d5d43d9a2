"""Model plumbing: spec strings, the factory that resolves them, the resilience layer (limits, retries,
usage) every call goes through, the OpenAI / Google / llama.cpp / embedding clients, and preflight.

The methods' agents (agents/*.py) call models only through what this package builds.
"""
