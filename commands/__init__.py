"""The sub-commands of cli.py: each module parses its flags into its settings and runs its job."""
