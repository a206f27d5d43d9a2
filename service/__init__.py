"""The long-running form of the commands: `python cli.py serve` (jobs over HTTP, shared provider limits)."""
