"""Agents: the LLM-backed steps of a graph (paraphrase generator, synonym substitutor, semantic judges),
the model factory that resolves spec strings, and the resilience layer that wraps every model."""
