"""Evaluation on downstream culture tasks: the task registry (`tasks`) and reading task files (`data`)."""
