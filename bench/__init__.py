"""Benchmarks and the OpenAI-compatible mock server they (and the integration tests) run against."""
