"""Persistence: seed files in, run directories (samples, manifest) out."""
