"""The `train` subcommand: flags generated from TrainConfig, then one of three paths.

- --backend openai: upload, create or resume a job, follow it (trainers.openai_backend).
- --launcher none: preflight, then train in this process (trainers.sft).
- a launcher: preflight, write the run's configs, print the command, run it unless --dry-run.

Flags given on the command line win over the same keys in --config; unset flags keep the file's value
or the field default. Every user mistake ends as one `error: ...` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from trainers.config import TrainConfig, build_config, load_config_file, save_config


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return annotation


def _comma_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _help(name: str, field) -> str:
    text = (field.description or "").replace("%", "%%")
    default = field.get_default(call_default_factory=True)
    if default is not None and default != [] and not isinstance(default, bool):
        shown = ",".join(default) if isinstance(default, list) else default
        text += f" (default: {shown})"
    return text


def add_train_parser(subparsers) -> None:
    """Register `train` with one flag per TrainConfig field, plus --config."""
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a model on chat data (LoRA/QLoRA/full, DeepSpeed launches, OpenAI jobs)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--config",
        dest="config_file",
        type=Path,
        default=None,
        help="YAML or JSON file with any of the fields below (flags given here win)",
    )
    for name, field in TrainConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        annotation = _unwrap_optional(field.annotation)
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": _help(name, field)}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(annotation) is Literal:
            choices = get_args(annotation)
            kwargs["type"] = type(choices[0])
            kwargs["choices"] = choices
        elif get_origin(annotation) is list:
            kwargs["type"] = _comma_list
            kwargs["metavar"] = "A,B"
        elif annotation in (int, float, Path, str):
            kwargs["type"] = annotation
        parser.add_argument(flag, **kwargs)
    parser.set_defaults(handler=run_train)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    cli = {name: getattr(args, name) for name in TrainConfig.model_fields if hasattr(args, name)}
    config_file = getattr(args, "config_file", None)
    file_values = load_config_file(config_file) if config_file else {}
    return build_config(file_values, cli)


def _run_hf(config: TrainConfig) -> int:
    from trainers import launcher, preflight
    from trainers.chat_data import data_layout
    from trainers.local_model import require_available

    assert config.data is not None  # TrainConfig requires it for this backend
    # Checked before the model loads (a minute, the first time) and in a dry run, whose command would fail.
    data_layout(config.data)

    if config.launcher == "none" and not config.dry_run:
        from trainers.sft import train

        train(config)
        return 0

    config = launcher.resolve_nodes(config)
    if not config.dry_run:
        # Every rank would fail to find the model; say it once, before anything starts.
        require_available(config.base_model)
    # Refuse before any GPU time is spent (the ranks check again once the tokenizer is loaded).
    report = preflight.run_preflight(config)
    print(report.render(), file=sys.stderr)
    if report.refusals and not config.skip_preflight:
        raise preflight.PreflightError("preflight refused: " + " | ".join(report.refusals))
    plan = launcher.prepare(config)
    print(f"training config: {plan.config_path}", file=sys.stderr)
    if plan.ds_config_path:
        print(f"deepspeed config: {plan.ds_config_path}", file=sys.stderr)
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    print(plan.shell(), flush=True)
    (config.output_dir / "launch_command.sh").write_text(plan.shell() + "\n", encoding="utf-8")
    if config.dry_run:
        return 0
    code = launcher.run(plan)
    if code != 0:
        print(f"error: the launched training exited with status {code}", file=sys.stderr)
        return code
    if config.merge and config.method != "full":
        from trainers.sft import merge_run

        print(f"merged model: {merge_run(config)}", file=sys.stderr)
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Run the `train` subcommand; returns the process exit status."""
    try:
        config = config_from_args(args)
        if config.backend == "openai":
            from trainers.openai_backend import checked_files, run_openai

            if config.dry_run:
                uploads = [] if config.job else [p for p in checked_files(config, sys.stderr) if p]
                save_config(config, config.output_dir / "train_config.yaml")
                action = f"follow job {config.job}" if config.job else f"fine-tune {config.base_model}"
                print(
                    f"dry run: would upload {', '.join(map(str, uploads)) or 'nothing'} and {action} on OpenAI",
                    file=sys.stderr,
                )
                return 0
            return run_openai(config)
        return _run_hf(config)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
