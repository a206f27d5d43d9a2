"""Build, show and run the command that starts one training process per GPU.

Each process runs `python -m trainers.sft --config RUN_DIR/train_config.yaml`, so every rank reads the
same config file the user can inspect; the DeepSpeed JSON is copied next to it. The command is
printed before it runs (and only printed with --dry-run), so what ran can always be re-run by hand.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trainers.config import TrainConfig, UserError, save_config
from trainers.deepspeed_configs import write_run_ds_config
from trainers.local_model import OFFLINE_ENV, resolve_model

WORKER_MODULE = "trainers.sft"


@dataclass
class LaunchPlan:
    command: list[str]
    env: dict[str, str]
    config_path: Path
    ds_config_path: Path | None
    notes: list[str] = field(default_factory=list)

    def shell(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (env + " " if env else "") + shlex.join(self.command)


def read_hostfile(path: Path) -> list[tuple[str, int]]:
    """Parse DeepSpeed's 'hostname slots=N' lines (comments and blank lines allowed)."""
    if not path.is_file():
        raise UserError(f"--hostfile {str(path)!r} does not exist")
    hosts = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        slots = next((p.split("=", 1)[1] for p in parts[1:] if p.startswith("slots=")), None)
        if slots is None or not slots.isdigit() or int(slots) < 1:
            raise UserError(f"{path}:{lineno}: expected 'hostname slots=N', got {raw.strip()!r}")
        hosts.append((parts[0], int(slots)))
    if not hosts:
        raise UserError(f"--hostfile {str(path)!r} lists no hosts")
    return hosts


def _executable(name: str) -> str:
    """Prefer the launcher installed beside this Python, so workers run in the same environment."""
    sibling = Path(sys.executable).parent / name
    if sibling.is_file():
        return str(sibling)
    return shutil.which(name) or name


def _worker_args(config_path: Path) -> list[str]:
    return ["-m", WORKER_MODULE, "--config", str(config_path)]


def build_command(
    config: TrainConfig, config_path: Path, ds_config_path: Path | None
) -> tuple[list[str], list[str]]:
    """The launcher's argv for this config, and notes for the user about running it."""
    notes: list[str] = []
    multi_node = config.num_nodes > 1
    if multi_node and config.launcher in ("torchrun", "accelerate") and not config.master_addr:
        raise UserError(
            f"--launcher {config.launcher} with --num-nodes {config.num_nodes} needs --master-addr"
        )

    if config.launcher == "none":
        return [sys.executable, *_worker_args(config_path)], notes

    if config.launcher == "deepspeed":
        cmd = [_executable("deepspeed")]
        if config.hostfile is not None:
            cmd += ["--hostfile", str(config.hostfile)]
        if multi_node or config.hostfile is not None:
            cmd += ["--num_nodes", str(config.num_nodes)]
        cmd += ["--num_gpus", str(config.num_gpus)]
        if config.master_addr:
            cmd += ["--master_addr", config.master_addr]
        cmd += ["--master_port", str(config.master_port)]
        # The worker reads LOCAL_RANK from the environment; a --local_rank argument would only be noise.
        cmd += ["--no_local_rank", "--module", WORKER_MODULE, "--config", str(config_path)]
        if multi_node:
            notes.append(
                "deepspeed starts the other nodes over passwordless ssh (pdsh) from this one; the repo and "
                "the run directory must exist at the same path on every node"
            )
        return cmd, notes

    if config.launcher == "torchrun":
        cmd = [_executable("torchrun"), "--nproc-per-node", str(config.num_gpus)]
        if multi_node:
            cmd += [
                "--nnodes",
                str(config.num_nodes),
                "--node-rank",
                str(config.node_rank),
                "--master-addr",
                str(config.master_addr),
                "--master-port",
                str(config.master_port),
            ]
            notes.append(
                f"run this on each of the {config.num_nodes} nodes, with --node-rank 0..{config.num_nodes - 1}"
            )
        else:
            cmd += ["--nnodes", "1", "--master-addr", "127.0.0.1", "--master-port", str(config.master_port)]
        return cmd + _worker_args(config_path), notes

    cmd = [
        _executable("accelerate"),
        "launch",
        "--num_processes",
        str(config.world_size),
        "--num_machines",
        str(config.num_nodes),
        "--machine_rank",
        str(config.node_rank),
        "--main_process_port",
        str(config.master_port),
    ]
    if multi_node:
        cmd += ["--main_process_ip", str(config.master_addr)]
        notes.append(
            f"run this on each of the {config.num_nodes} nodes, with --machine_rank 0..{config.num_nodes - 1}"
        )
    if ds_config_path is not None:
        # The Trainer also reads this file through the training config; naming it here makes accelerate
        # set up its DeepSpeed plugin from the same JSON instead of its own defaults.
        cmd += ["--use_deepspeed", "--deepspeed_config_file", str(ds_config_path)]
        if config.hostfile is not None:
            cmd += ["--deepspeed_hostfile", str(config.hostfile)]
    elif config.world_size > 1:
        cmd += ["--multi_gpu"]
    return cmd + _worker_args(config_path), notes


def resolve_nodes(config: TrainConfig) -> TrainConfig:
    """Take the node count from --hostfile, checking it against --num-nodes and --num-gpus."""
    if config.hostfile is None:
        return config
    hosts = read_hostfile(config.hostfile)
    if config.num_nodes not in (1, len(hosts)):
        raise UserError(
            f"--num-nodes {config.num_nodes} but --hostfile {str(config.hostfile)!r} lists {len(hosts)} hosts"
        )
    short = [h for h, slots in hosts if slots < config.num_gpus]
    if short:
        raise UserError(f"--num-gpus {config.num_gpus} but hosts {', '.join(short)} have fewer slots")
    return config.model_copy(update={"num_nodes": len(hosts)})


def prepare(config: TrainConfig) -> LaunchPlan:
    """Write the run's configs and build the command; runs nothing."""
    config = resolve_nodes(config)
    updates = {}
    run_dir = config.output_dir
    ds_path = write_run_ds_config(config, run_dir)
    if ds_path is not None:
        updates["deepspeed_config"] = ds_path
    # The workers train; they must neither relaunch nor stop at a dry run.
    worker = config.model_copy(update={**updates, "dry_run": False})
    config_path = save_config(worker, run_dir / "train_config.yaml")
    command, notes = build_command(worker, config_path, ds_path)

    env: dict[str, str] = {}
    if resolve_model(config.base_model).is_local:
        env.update(OFFLINE_ENV)
    return LaunchPlan(command, env, config_path, ds_path, notes)


def run(plan: LaunchPlan, cwd: Path | None = None, timeout: float | None = None) -> int:
    """Run the launch command in its own process group; Ctrl-C or a timeout stops every rank."""
    env = {**os.environ, **plan.env}
    repo_root = str(Path(__file__).resolve().parent.parent)
    # Workers import `trainers` by module name, whatever directory the user launched from.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH", "")) if p)
    try:
        proc = subprocess.Popen(plan.command, env=env, cwd=cwd, start_new_session=True)
    except FileNotFoundError as exc:
        raise UserError(f"launcher {plan.command[0]!r} is not installed or not on PATH") from exc
    try:
        return proc.wait(timeout=timeout)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        _stop_group(proc)
        raise


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
