"""Fine-tuning: chat SFT with transformers + peft (LoRA, QLoRA, full), DeepSpeed launches, OpenAI jobs.

`command.py` is the `train` subcommand, `config.py` the one settings object, `sft.py` the trainer,
`launcher.py` the multi-process command, `preflight.py` the refusals, `openai_backend.py` the API path.
"""
