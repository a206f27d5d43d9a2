"""LangGraph state machines: the per-seed augmentation graph and the runner that drives it over a seed file."""
