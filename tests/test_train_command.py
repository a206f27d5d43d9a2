"""The `train` subcommand through cli.main: flags from the config, YAML merging, dry-run launch
commands, user errors."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cli import main
from tests.train_helpers import write_dataset_dir
from trainers.config import TrainConfig, UserError
from trainers.launcher import build_command, prepare, read_hostfile

ROOT = Path(__file__).resolve().parent.parent
LLAMA70 = "meta-llama/Llama-2-70b-chat-hf"
# A hub id that exists nowhere, with a size in its name so that the preflight cannot refuse it first.
MISSING_MODEL = "culture-forge-tests/no-such-model-7b"


def cli(argv: list[str]) -> int:
    return main(["train", *map(str, argv)])


def planned_config(out: Path) -> dict:
    """The config a dry run hands to the ranks: what the flags turned into."""
    return yaml.safe_load((out / "train_config.yaml").read_text())


def one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: "), err
    return err.strip()


@pytest.fixture
def data(tmp_path) -> Path:
    return write_dataset_dir(tmp_path / "dataset")


@pytest.fixture
def hostfile(tmp_path) -> Path:
    path = tmp_path / "hostfile"
    path.write_text("# two nodes of eight GPUs\ngpu-node-1 slots=8\ngpu-node-2 slots=8\n")
    return path


def test_every_config_field_is_a_flag_with_help_text(capsys):
    with pytest.raises(SystemExit) as exited:
        cli(["--help"])
    help_text = capsys.readouterr().out
    assert exited.value.code == 0
    for name, field in TrainConfig.model_fields.items():
        assert field.description, f"{name} has no help text"
        assert "--" + name.replace("_", "-") in help_text


def test_flags_land_in_the_typed_config(tmp_path, data):
    out = tmp_path / "run"
    code = cli(
        [
            "--base-model",
            LLAMA70,
            "--data",
            data,
            "--method",
            "qlora",
            "--launcher",
            "deepspeed",
            "--num-gpus",
            "8",
            "--zero",
            "3",
            "--lora-target-modules",
            "q_proj,v_proj",
            "--no-gradient-checkpointing",
            "--learning-rate",
            "1e-4",
            "--max-steps",
            "20",
            # without gradient checkpointing 70B does not fit 8 x 80 GiB; the refusal is tested below
            "--skip-preflight",
            "--output-dir",
            out,
            "--dry-run",
        ]
    )
    assert code == 0
    config = planned_config(out)
    assert config["skip_preflight"] is True
    assert config["method"] == "qlora" and config["zero"] == 3 and config["num_gpus"] == 8
    assert config["lora_target_modules"] == ["q_proj", "v_proj"]
    assert config["gradient_checkpointing"] is False
    assert config["learning_rate"] == 1e-4 and config["max_steps"] == 20 and config["data"] == str(data)


def test_yaml_config_is_merged_under_explicit_flags(tmp_path, data):
    path = tmp_path / "train.yaml"
    plan = {"base-model": LLAMA70, "method": "qlora", "launcher": "deepspeed", "zero": 3, "num_gpus": 8}
    path.write_text(yaml.safe_dump({**plan, "data": str(data), "lora_r": 64, "max_steps": 5}))
    out = tmp_path / "run"

    assert cli(["--config", path, "--max-steps", "9", "--output-dir", out, "--dry-run"]) == 0

    config = planned_config(out)
    assert config["base_model"] == LLAMA70 and config["lora_r"] == 64
    assert config["max_steps"] == 9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lora-r", "0"], "error: --lora-r 0: Input should be greater than 0"),
        (["--zero", "3"], "error: --zero 3 runs under DeepSpeed and needs a distributed launcher"),
        (["--launcher", "deepspeed", "--zero", "2", "--offload"], "error: --offload needs --zero 3"),
        (["--job", "ftjob-1"], "error: --job 'ftjob-1' only applies to --backend openai"),
        (["--launcher", "torchrun", "--hostfile", "h"], "error: --hostfile is read by the deepspeed"),
        (["--backend", "openai"], "error: --backend openai needs --base-model set to an OpenAI model"),
    ],
)
def test_user_errors_are_one_line_and_exit_two(data, capsys, argv, message):
    code = cli(["--data", data, *argv])
    assert code == 2
    assert one_error_line(capsys.readouterr().err).startswith(message)


# Before: --max-steps 0 trained one step and -3 a whole epoch; inf and nan passed every bound.
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-steps", "0", "greater than 0"),
        ("--max-steps", "-1", "greater than 0"),
        ("--max-steps", "-3", "greater than 0"),
        ("--learning-rate", "0", "greater than 0"),
        ("--learning-rate", "-0.001", "greater than 0"),
        ("--learning-rate", "inf", "finite number"),
        ("--learning-rate", "nan", "finite number"),
        ("--num-epochs", "0", "greater than 0"),
        ("--num-epochs", "-2", "greater than 0"),
        ("--num-epochs", "inf", "finite number"),
        ("--batch-size", "0", "greater than 0"),
        ("--batch-size", "-4", "greater than 0"),
        ("--gradient-accumulation-steps", "0", "greater than 0"),
        ("--warmup-ratio", "1.5", "less than 1"),
        ("--weight-decay", "-0.1", "greater than or equal to 0"),
        ("--seed", "-1", "greater than or equal to 0"),
        ("--gpu-memory-gb", "inf", "finite number"),
        ("--poll-interval", "inf", "finite number"),
    ],
)
def test_wrong_numbers_are_refused_in_one_line_before_anything_runs(
    tmp_path, data, capsys, flag, value, message
):
    out = tmp_path / "run"
    # --dry-run: should the check regress, the test fails in seconds instead of training a model.
    code = cli(["--data", data, flag, value, "--output-dir", out, "--dry-run"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith(f"error: {flag} ") and value in line and message in line
    assert not out.exists()


def test_an_unknown_lr_schedule_is_refused_by_the_parser(data, capsys):
    with pytest.raises(SystemExit) as exited:
        cli(["--data", data, "--lr-scheduler", "cosine-ish"])
    assert exited.value.code == 2
    assert "invalid choice: 'cosine-ish'" in one_error_line(capsys.readouterr().err)


def test_missing_data_and_bad_yaml_are_user_errors(tmp_path, capsys):
    assert cli([]) == 2
    assert capsys.readouterr().err.startswith("error: --data is required")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    assert cli(["--config", bad]) == 2
    assert "must hold a mapping" in capsys.readouterr().err


@pytest.mark.parametrize("data_flag", [[], ["--data", "no/such/dataset"]], ids=["no-data", "missing-data"])
def test_a_dry_run_without_its_data_is_refused(tmp_path, capsys, data_flag):
    # Before: exit 0 and a printed launch command that would have trained on nothing.
    out = tmp_path / "run"
    plan = ["--base-model", LLAMA70, "--method", "qlora", "--launcher", "deepspeed", "--num-gpus", "8"]
    code = cli([*plan, "--zero", "3", *data_flag, "--output-dir", out, "--dry-run"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert "--data" in line and ("is required" in line or "'no/such/dataset' does not exist" in line)
    assert not (out / "train_config.yaml").exists()


def test_an_openai_dry_run_checks_the_data_it_would_upload(tmp_path, capsys):
    openai = ["--backend", "openai", "--base-model", "gpt-4o-mini-2024-07-18", "--output-dir", tmp_path / "o"]
    assert cli([*openai, "--data", tmp_path / "missing.jsonl", "--dry-run"]) == 2
    assert "missing.jsonl' does not exist" in one_error_line(capsys.readouterr().err)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    assert cli([*openai, "--data", bad, "--dry-run"]) == 2
    assert "no assistant message" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "launch", [[], ["--launcher", "torchrun", "--num-gpus", "2"]], ids=["in-process", "launched"]
)
def test_a_base_model_that_is_not_here_is_named_at_once(tmp_path, data, capsys, launch):
    # Before: about 50 s of hub retries, then a traceback (in-process) or one per rank (launched).
    out = tmp_path / "run"
    started = time.monotonic()
    code = cli(["--base-model", MISSING_MODEL, "--data", data, *launch, "--output-dir", out])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert f"--base-model '{MISSING_MODEL}'" in line and "HF_HUB_OFFLINE=1" in line
    assert time.monotonic() - started < 10
    assert not (out / "train_config.yaml").exists() and not (out / "adapter").exists()


def _env_with_the_hub_unset() -> dict[str, str]:
    """The caller's environment without offline switches, and a hub endpoint that refuses at once:
    if offline mode did not hold, the request would go to 127.0.0.1:9 (and the message would differ)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}


def _train_argv(entry: str, data: Path, run_dir: Path) -> list[str]:
    if entry == "cli.py":
        return [
            "cli.py",
            "train",
            "--base-model",
            MISSING_MODEL,
            "--data",
            str(data),
            "--output-dir",
            str(run_dir),
        ]
    # What the launcher starts on every rank (and what launch_command.sh runs by hand).
    config = run_dir.parent / "train_config.yaml"
    config.write_text(
        yaml.safe_dump({"base_model": MISSING_MODEL, "data": str(data), "output_dir": str(run_dir)})
    )
    return ["-m", "trainers.sft", "--config", str(config)]


@pytest.mark.parametrize("entry", ["cli.py", "launched rank"])
def test_offline_mode_holds_in_every_train_process(tmp_path, data, entry):
    proc = subprocess.run(
        [sys.executable, *_train_argv(entry, data, tmp_path / "run")],
        cwd=ROOT,
        env=_env_with_the_hub_unset(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert f"--base-model '{MISSING_MODEL}'" in line and "the hub is off (HF_HUB_OFFLINE=1)" in line


def test_dry_run_for_8_gpus_on_2_nodes_prints_the_deepspeed_command_and_writes_configs(
    tmp_path, data, hostfile, capsys
):
    out = tmp_path / "run70b"
    code = cli(
        [
            "--base-model",
            LLAMA70,
            "--data",
            str(data),
            "--method",
            "qlora",
            "--launcher",
            "deepspeed",
            "--num-gpus",
            "8",
            "--zero",
            "3",
            "--hostfile",
            str(hostfile),
            "--output-dir",
            str(out),
            "--dry-run",
        ]
    )

    captured = capsys.readouterr()
    assert code == 0
    argv = shlex.split(captured.out.strip().splitlines()[-1])
    assert Path(argv[0]).name == "deepspeed"
    assert argv[1:] == [
        "--hostfile",
        str(hostfile),
        "--num_nodes",
        "2",
        "--num_gpus",
        "8",
        "--master_port",
        "29500",
        "--no_local_rank",
        "--module",
        "trainers.sft",
        "--config",
        str(out / "train_config.yaml"),
    ]
    assert (out / "launch_command.sh").read_text().strip() == captured.out.strip().splitlines()[-1]
    # The ranks get the whole config, pointing at the copied DeepSpeed file, and must train (not dry-run).
    written = yaml.safe_load((out / "train_config.yaml").read_text())
    assert written["num_nodes"] == 2 and written["num_gpus"] == 8 and written["method"] == "qlora"
    assert written["dry_run"] is False and written["deepspeed_config"] == str(out / "deepspeed_config.json")
    ds = json.loads((out / "deepspeed_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    # The memory estimate is shown for 16 GPUs, and nothing was trained.
    assert "69.00B parameters" in captured.err and "-> ZeRO-3" in captured.err
    assert not (out / "adapter").exists() and not (out / "summary.json").exists()


def test_dry_run_with_offload_ships_the_offload_config(tmp_path, data):
    out = tmp_path / "offload"
    assert (
        cli(
            [
                "--base-model",
                LLAMA70,
                "--data",
                str(data),
                "--method",
                "full",
                "--launcher",
                "deepspeed",
                "--num-gpus",
                "8",
                "--zero",
                "3",
                "--offload",
                "--output-dir",
                str(out),
                "--dry-run",
            ]
        )
        == 0
    )
    ds = json.loads((out / "deepspeed_config.json").read_text())
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"


def test_dry_run_refusal_prints_the_estimate_then_one_error_line(tmp_path, data, capsys):
    code = cli(
        [
            "--base-model",
            LLAMA70,
            "--data",
            str(data),
            "--method",
            "full",
            "--launcher",
            "deepspeed",
            "--num-gpus",
            "8",
            "--zero",
            "2",
            "--output-dir",
            str(tmp_path / "x"),
            "--dry-run",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "ZeRO-3 + CPU offload" in err  # the estimate table came first
    assert err.splitlines()[-1].startswith("error: preflight refused:")
    assert not (tmp_path / "x" / "train_config.yaml").exists()


def multi_node(tmp_path: Path, launcher: str, **extra) -> TrainConfig:
    values = {
        "base_model": LLAMA70,
        "data": tmp_path / "d",
        "method": "qlora",
        "launcher": launcher,
        "zero": 3,
        "num_gpus": 8,
        "num_nodes": 2,
        "master_addr": "10.1.2.3",
        "node_rank": 1,
        "output_dir": tmp_path / "r",
    }
    return TrainConfig(**{**values, **extra})


def test_torchrun_multi_node_command(tmp_path):
    cmd, notes = build_command(
        multi_node(tmp_path, "torchrun"), Path("r/train_config.yaml"), Path("r/ds.json")
    )
    assert Path(cmd[0]).name == "torchrun"
    assert cmd[1:] == [
        "--nproc-per-node",
        "8",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "10.1.2.3",
        "--master-port",
        "29500",
        "-m",
        "trainers.sft",
        "--config",
        "r/train_config.yaml",
    ]
    assert "each of the 2 nodes" in notes[0]


def test_accelerate_multi_node_command_uses_the_same_deepspeed_file(tmp_path, hostfile):
    config = multi_node(tmp_path, "accelerate", hostfile=hostfile)
    cmd, _ = build_command(config, Path("r/train_config.yaml"), Path("r/ds.json"))
    assert Path(cmd[0]).name == "accelerate" and cmd[1] == "launch"
    assert cmd[cmd.index("--num_processes") + 1] == "16"
    assert cmd[cmd.index("--main_process_ip") + 1] == "10.1.2.3"
    assert cmd[cmd.index("--deepspeed_config_file") + 1] == "r/ds.json"
    assert cmd[-4:] == ["-m", "trainers.sft", "--config", "r/train_config.yaml"]


def test_multi_node_torchrun_needs_a_master_address(tmp_path):
    with pytest.raises(UserError, match="needs --master-addr"):
        build_command(multi_node(tmp_path, "torchrun", master_addr=None), Path("c"), None)


def test_hostfile_is_checked_against_the_flags(tmp_path, hostfile):
    assert read_hostfile(hostfile) == [("gpu-node-1", 8), ("gpu-node-2", 8)]
    with pytest.raises(UserError, match="--num-nodes 3 but --hostfile"):
        prepare(multi_node(tmp_path, "deepspeed", hostfile=hostfile, num_nodes=3))
    with pytest.raises(UserError, match="have fewer slots"):
        prepare(multi_node(tmp_path, "deepspeed", hostfile=hostfile, num_gpus=16, num_nodes=1))
    broken = tmp_path / "broken"
    broken.write_text("gpu-node-1 gpus=8\n")
    with pytest.raises(UserError, match="expected 'hostname slots=N'"):
        read_hostfile(broken)


def test_local_models_launch_offline(tmp_path):
    from tests.train_helpers import write_tiny_llama

    model = write_tiny_llama(tmp_path / "tiny")
    plan = prepare(
        TrainConfig(
            base_model=str(model),
            data=tmp_path / "d",
            launcher="torchrun",
            num_gpus=2,
            zero=3,
            output_dir=tmp_path / "run",
        )
    )
    assert plan.env["HF_HUB_OFFLINE"] == "1" and plan.env["TRANSFORMERS_OFFLINE"] == "1"
    assert plan.shell().startswith("HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ")


def test_openai_dry_run_writes_the_config_and_touches_nothing(tmp_path, data, capsys):
    code = cli(
        [
            "--backend",
            "openai",
            "--base-model",
            "gpt-4o-mini-2024-07-18",
            "--data",
            str(data),
            "--output-dir",
            str(tmp_path / "o"),
            "--dry-run",
        ]
    )
    assert code == 0
    assert yaml.safe_load((tmp_path / "o" / "train_config.yaml").read_text())["backend"] == "openai"
