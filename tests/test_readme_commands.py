"""Every command in README.md's code blocks works as written: each runs through `python cli.py` here.

The commands are read out of README.md itself. ENTRIES holds one entry per README command, saying how
it runs on a 2-core machine with no network: which README text is swapped for a small form or a local
stand-in (`--limit 1`, `--max-steps 2`, a temporary directory for DIR, the loopback servers for
`openai:` models and OpenAI fine-tuning), which flags are added (an output directory out of the
repository), and what must come out (exit status, files, output lines). A README command with no
entry, or an entry whose command is no longer in README.md, fails `test_every_readme_command_has_one_entry`.

Every command runs in its own `python cli.py` process (cwd: the repository root, HF_HUB_OFFLINE=1,
no provider keys but the ones an entry sets). `{name}` in an entry is filled from the fixture of that
name: `tmp` (this test's directory), `mock` (bench/mock_openai_server.py), `finetune`
(tests/fake_openai_finetune_server.py), `key` (the key both servers accept), `run` (a small augment
run made first, standing for runs/X), `built` (such a run that README's build-dataset command has
turned into dataset-ar), `cp` (a small culturepark run, standing for runs/cp-ar and runs/cp-all),
`job` (a fine-tuning job on the imitation server), `evalrun` (a small evaluate run, standing for
runs/eval-local), `pipeline` (a pipeline stopped after its dataset, standing for runs/pipeline-ar), `trained` (a real 2-step LoRA run, standing for runs/X/train), `hostfile`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.mock_openai_server import MockOpenAIServer, ServerConfig
from tests.conftest import FAKE_KEY
from tests.fake_openai_finetune_server import FakeServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GOOGLE_API_KEY", "GEMINI_API_KEY")
TIMEOUT_S = 300

pytestmark = pytest.mark.integration


def readme_commands(text: str) -> list[str]:
    """The `... cli.py ...` commands of README's fenced code blocks, one line each, comments dropped.

    Continuation lines are joined and `setup && command` keeps the command; the result is the command
    as shlex reads it, re-joined with single spaces.
    """
    commands = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if "cli.py" in words:
                    commands.append(" ".join(words))
    return commands


@dataclass(frozen=True)
class Entry:
    """How one README command runs here, and what it must do."""

    name: str
    readme: str  # the command as readme_commands() gives it
    replace: tuple[tuple[str, str], ...] = ()  # (README text, what runs here); each text occurs once
    extra: tuple[str, ...] = ()  # flags added after the command
    env: tuple[tuple[str, str], ...] = ()
    exit_status: int = 0
    outputs: tuple[str, ...] = ()  # files that must exist afterwards
    absent: tuple[str, ...] = ()  # paths that must not exist afterwards (nothing written)
    stdout: tuple[str, ...] = ()  # text the standard output must contain
    stderr: tuple[str, ...] = ()
    served: tuple[str, ...] = ()  # models the mock server must have been asked for
    check: Callable[[dict[str, str]], None] | None = None  # further checks of the outputs
    slow: bool = False  # loads an embedded model (or trains one)
    long_running: bool = False  # a server: run by its own session test, not to its exit

    def command(self) -> str:
        text = self.readme
        for old, new in self.replace:
            text = text.replace(old, new)
        return text + "".join(f" {shlex.quote(flag)}" for flag in self.extra)

    def placeholders(self) -> set[str]:
        texts = [self.command(), *(v for _, v in self.env), *self.outputs, *self.absent]
        texts += [*self.stdout, *self.stderr]
        return {name for text in texts for _, name, _, _ in string.Formatter().parse(text) if name}


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def augment_completed(out: str) -> Callable[[dict[str, str]], None]:
    def check(ctx: dict[str, str]) -> None:
        manifest = json.loads((Path(out.format(**ctx)) / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["status"] == "completed" and manifest["counts"]["seeds_done"] == 1, manifest

    return check


def built_dataset(ctx: dict[str, str]) -> None:
    out = Path(ctx["run"]) / "dataset-ar"
    rows = json_lines(out / "train.jsonl")
    augmented = {s["text"] for s in json_lines(Path(ctx["run"]) / "samples.jsonl")}
    # Every sample the run kept became a question of its own, labelled with Arabic answers.
    asked = " ".join(row["messages"][1]["content"] for row in rows)
    assert all(text in asked for text in augmented)
    assert {row["messages"][0]["content"] for row in rows} == {
        "You are an Arabic chatbot that knows Arabic culture very well."
    }


def trained_two_steps(ctx: dict[str, str]) -> None:
    summary = json.loads((Path(ctx["tmp"]) / "train" / "summary.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 2 and summary["base_model"] == "local" and summary["final_loss"] > 0


def planned_70b(ctx: dict[str, str]) -> None:
    out = Path(ctx["tmp"]) / "70b"
    ds = json.loads((out / "deepspeed_config.json").read_text(encoding="utf-8"))
    assert ds["zero_optimization"]["stage"] == 3
    # The command saved for running by hand is DeepSpeed's, and nothing was trained.
    assert (out / "launch_command.sh").read_text(encoding="utf-8").split()[0].endswith("deepspeed")
    assert not (out / "adapter").exists() and not (out / "summary.json").exists()


def job_succeeded(out: str) -> Callable[[dict[str, str]], None]:
    def check(ctx: dict[str, str]) -> None:
        record = json.loads((Path(out.format(**ctx)) / "openai_job.json").read_text(encoding="utf-8"))
        assert record["status"] == "succeeded" and record["fine_tuned_model"].startswith("ft:gpt-4o-mini")

    return check


def culturepark_completed(out: str, dialogues: int) -> Callable[[dict[str, str]], None]:
    def check(ctx: dict[str, str]) -> None:
        manifest = json.loads((Path(out.format(**ctx)) / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["status"] == "completed", manifest
        assert manifest["counts"]["dialogues_done"] == dialogues, manifest["counts"]

    return check


def culturepark_resumed(ctx: dict[str, str]) -> None:
    manifest = json.loads((Path(ctx["cp"]) / "manifest.json").read_text(encoding="utf-8"))
    # A second process worked on the run: its segment is added, nothing is asked again.
    assert manifest["status"] == "completed" and len(manifest["segments"]) == 2
    assert manifest["segments"][1]["llm_calls"] == 0


def culturepark_dataset(ctx: dict[str, str]) -> None:
    rows = json_lines(Path(ctx["cp"]) / "dataset" / "train.jsonl")
    opinions = json_lines(Path(ctx["cp"]) / "opinions.jsonl")
    answers = [row["messages"][-1]["content"] for row in rows]
    arabic = [o for o in opinions if o["culture"] == "Arabic"]
    assert arabic and all(any(o["opinion"] in a for a in answers) for o in arabic)


def evaluated(out: str, cultures: set[str], models: int, per_task: int) -> Callable[[dict[str, str]], None]:
    def check(ctx: dict[str, str]) -> None:
        run = Path(out.format(**ctx))
        results = json.loads((run / "results.json").read_text(encoding="utf-8"))
        assert {row["culture"] for row in results["cultures"]} == cultures, results["cultures"]
        assert len(results["models"]) == models and all(row["n"] == per_task for row in results["tasks"])
        # Every model answered the same items.
        predictions = json_lines(run / "predictions.jsonl")
        items = [sorted(p["item_id"] for p in predictions if p["column"] == c) for c in range(models)]
        assert all(answered == items[0] for answered in items) and items[0], items
        assert (run / "culture_macro_f1.png").stat().st_size > 0
        assert (run / "culture_radar.png").is_file() == (len(cultures) >= 3)  # a radar needs 3 axes

    return check


def evaluate_resumed(ctx: dict[str, str]) -> None:
    manifest = json.loads((Path(ctx["evalrun"]) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "completed" and len(manifest["segments"]) == 2
    assert manifest["segments"][1]["llm_calls"] == 0  # nothing answered was asked again


# The mock server stands in for the OpenAI API: the SDK finds its key and address in the environment.
MOCK_OPENAI = (("OPENAI_API_KEY", "{key}"), ("OPENAI_BASE_URL", "{mock}"))


def read_by_logprobs(out: str, questions: int) -> Callable[[dict[str, str]], None]:
    """The default distribution of an openai: model: one first-token logprob reading per question."""

    def check(ctx: dict[str, str]) -> None:
        answers = json_lines(Path(out.format(**ctx)) / "answers.jsonl")
        assert len(answers) == questions and all(a["sample"] == -1 for a in answers)
        assert all(sum(a["probabilities"].values()) > 0.999 for a in answers)

    return check


def augment_outputs(out: str) -> tuple[str, ...]:
    return (f"{{tmp}}/{out}/samples.jsonl", f"{{tmp}}/{out}/manifest.json")


ENTRIES: tuple[Entry, ...] = (
    Entry(
        name="quick-start-augment",
        readme=".venv/bin/python cli.py augment",
        # The default run on one seed of fifty: the embedded generator, judge and thesaurus all load.
        extra=("--limit", "1", "--out", "{tmp}/default"),
        outputs=augment_outputs("default"),
        check=augment_completed("{tmp}/default"),
        slow=True,
    ),
    Entry(
        name="augment-limit",
        readme="python cli.py augment --limit 5 --out runs/try",
        replace=(("--limit 5", "--limit 1"), ("runs/try", "{tmp}/try")),
        outputs=augment_outputs("try"),
        check=augment_completed("{tmp}/try"),
        slow=True,
    ),
    Entry(
        name="augment-openai",
        readme="python cli.py augment --concurrency 32 --generator openai:gpt-4o --rpm 500 --tpm 200000",
        extra=("--limit", "1", "--out", "{tmp}/openai"),
        env=MOCK_OPENAI,
        outputs=augment_outputs("openai"),
        served=("gpt-4o",),
        check=augment_completed("{tmp}/openai"),
        slow=True,  # the default judge is the embedded embedding model
    ),
    Entry(
        name="augment-base-url",
        readme="python cli.py augment --generator openai:my-model --base-url http://127.0.0.1:8000/v1",
        replace=(("http://127.0.0.1:8000/v1", "{mock}"),),
        extra=("--limit", "1", "--out", "{tmp}/base-url"),
        env=(("OPENAI_API_KEY", "{key}"),),
        outputs=augment_outputs("base-url"),
        served=("my-model",),
        check=augment_completed("{tmp}/base-url"),
        slow=True,
    ),
    # Google's API cannot be reached from here, and google: models take no base URL that could point
    # them at a loopback imitation. So the command runs without GOOGLE_API_KEY: it must get as far as
    # checking its models, then stop in one line before a run directory is made.
    Entry(
        name="augment-google",
        readme="python cli.py augment --generator google:gemini-2.0-flash --judge embed:google:text-embedding-004",
        extra=("--limit", "1", "--out", "{tmp}/google"),
        exit_status=2,
        stderr=("GOOGLE_API_KEY is not set",),
        absent=("{tmp}/google",),
    ),
    Entry(
        name="augment-chained-judges",
        readme="python cli.py augment --judge embed:local --judge llm:openai:gpt-4o-mini",
        extra=("--limit", "1", "--out", "{tmp}/chained"),
        env=MOCK_OPENAI,
        outputs=augment_outputs("chained"),
        served=("gpt-4o-mini",),
        check=augment_completed("{tmp}/chained"),
        slow=True,
    ),
    Entry(
        name="culturepark-embedded",
        readme="python cli.py culturepark --limit 2 --turns 2 --out runs/cp-try",
        replace=(("--limit 2 --turns 2", "--limit 1 --turns 1"), ("runs/cp-try", "{tmp}/cp-try")),
        outputs=("{tmp}/cp-try/dialogues.jsonl", "{tmp}/cp-try/opinions.jsonl", "{tmp}/cp-try/manifest.json"),
        check=culturepark_completed("{tmp}/cp-try", 1),
        slow=True,
    ),
    Entry(
        name="culturepark-openai",
        readme="python cli.py culturepark --culture Arabic --mode in --style guided --generator openai:gpt-4o-mini "
        "--verifier llm:openai:gpt-4o --concurrency 32 --rpm 3000 --out runs/cp-ar",
        replace=(("runs/cp-ar", "{tmp}/cp-ar"),),
        extra=("--limit", "1", "--turns", "1"),
        env=MOCK_OPENAI,
        outputs=("{tmp}/cp-ar/dialogues.jsonl", "{tmp}/cp-ar/opinions.jsonl"),
        served=("gpt-4o-mini", "gpt-4o"),
        check=culturepark_completed("{tmp}/cp-ar", 1),
        slow=True,  # the default embedder is the embedded embedding model
    ),
    Entry(
        name="culturepark-resume",
        readme="python cli.py culturepark --culture all --mode cross --resume runs/cp-all",
        replace=(("runs/cp-all", "{cp}"), ("--culture all --mode cross ", "")),
        env=MOCK_OPENAI,
        check=culturepark_resumed,
    ),
    Entry(
        name="culturepark-build-dataset",
        readme="python cli.py build-dataset --culture Arabic --culturepark runs/cp-ar --format openai "
        "--out runs/cp-ar/dataset",
        replace=(
            ("--culturepark runs/cp-ar ", "--culturepark {cp} "),
            ("runs/cp-ar/dataset", "{cp}/dataset"),
        ),
        outputs=("{cp}/dataset/train.jsonl",),
        check=culturepark_dataset,
    ),
    Entry(
        name="build-dataset",
        readme="python cli.py build-dataset --culture Arabic --samples runs/X/samples.jsonl --format openai "
        "--out runs/X/dataset-ar",
        replace=(("runs/X/samples.jsonl", "{run}/samples.jsonl"), ("runs/X/dataset-ar", "{run}/dataset-ar")),
        outputs=(
            "{run}/dataset-ar/train.jsonl",
            "{run}/dataset-ar/labels.jsonl",
            "{run}/dataset-ar/README.md",
        ),
        stdout=("for Arabic to {run}/dataset-ar",),
        check=built_dataset,
    ),
    Entry(
        name="train-local-lora",
        readme="python cli.py train --base-model local --data runs/X/dataset-ar --max-steps 20",
        replace=(("runs/X/dataset-ar", "{built}/dataset-ar"), ("--max-steps 20", "--max-steps 2")),
        extra=("--output-dir", "{tmp}/train"),
        outputs=(
            "{tmp}/train/adapter/adapter_config.json",
            "{tmp}/train/adapter/adapter_model.safetensors",
            "{tmp}/train/summary.json",
            "{tmp}/train/loss_curve.json",
        ),
        check=trained_two_steps,
        slow=True,
    ),
    Entry(
        name="train-70b-zero3-dry-run",
        readme="python cli.py train --base-model meta-llama/Llama-2-70b-chat-hf --data DIR --method qlora "
        "--launcher deepspeed --num-gpus 8 --zero 3 [--hostfile hostfile] [--dry-run]",
        replace=(
            ("DIR", "{built}/dataset-ar"),
            ("[--hostfile hostfile] [--dry-run]", "--hostfile {hostfile} --dry-run"),
        ),
        extra=("--output-dir", "{tmp}/70b"),
        outputs=(
            "{tmp}/70b/train_config.yaml",
            "{tmp}/70b/deepspeed_config.json",
            "{tmp}/70b/launch_command.sh",
        ),
        stdout=(
            "--hostfile {hostfile} --num_nodes 2 --num_gpus 8",
            "--module trainers.sft --config {tmp}/70b/train_config.yaml",
        ),
        stderr=("69.00B parameters", "-> ZeRO-3 "),
        check=planned_70b,
    ),
    Entry(
        name="train-openai",
        readme="OPENAI_API_KEY=... python cli.py train --backend openai --base-model gpt-4o-mini-2024-07-18 --data FILE",
        replace=(("OPENAI_API_KEY=...", "OPENAI_API_KEY={key}"), ("FILE", "{built}/dataset-ar/train.jsonl")),
        # The imitation server moves a job one status per poll; README's default waits 10 s per poll.
        extra=("--output-dir", "{tmp}/openai-job", "--poll-interval", "0.05"),
        env=(("OPENAI_BASE_URL", "{finetune}"),),
        outputs=("{tmp}/openai-job/openai_job.json",),
        stdout=("ft:gpt-4o-mini-2024-07-18:org-test:",),
        check=job_succeeded("{tmp}/openai-job"),
    ),
    Entry(
        name="train-openai-follow-job",
        readme="python cli.py train --backend openai --job ftjob-...",
        replace=(("ftjob-...", "{job}"),),
        extra=("--output-dir", "{tmp}/follow", "--poll-interval", "0.05"),
        env=(("OPENAI_API_KEY", "{key}"), ("OPENAI_BASE_URL", "{finetune}")),
        outputs=("{tmp}/follow/openai_job.json",),
        stdout=("ft:gpt-4o-mini-2024-07-18:org-test:",),
        stderr=("following job {job}",),
        check=job_succeeded("{tmp}/follow"),
    ),
    Entry(
        name="evaluate-embedded",
        readme="python cli.py evaluate --limit-per-task 20 --out runs/eval-local",
        replace=(
            ("--limit-per-task 20", "--limit-per-task 2 --culture German,English"),
            ("runs/eval-local", "{tmp}/ev"),
        ),
        outputs=("{tmp}/ev/report.md", "{tmp}/ev/manifest.json"),
        stdout=("macro-F1 per culture",),
        check=evaluated("{tmp}/ev", {"German", "English"}, models=1, per_task=2),
        slow=True,
    ),
    Entry(
        name="evaluate-hf-adapter",
        readme="python cli.py evaluate --model local --model hf:local --adapter runs/X/train/adapter --culture Arabic",
        replace=(("runs/X/train/adapter", "{trained}/adapter"),),
        extra=("--limit-per-task", "2", "--max-tokens", "4", "--out", "{tmp}/ev"),
        check=evaluated("{tmp}/ev", {"Arabic"}, models=2, per_task=2),
        slow=True,
    ),
    Entry(
        name="evaluate-train-output",
        readme="python cli.py evaluate --model runs/X/train --culture Arabic",
        replace=(("runs/X/train", "{trained}"),),
        extra=("--limit-per-task", "2", "--max-tokens", "4", "--out", "{tmp}/ev"),
        check=evaluated("{tmp}/ev", {"Arabic"}, models=1, per_task=2),
        slow=True,
    ),
    Entry(
        name="evaluate-openai",
        readme="python cli.py evaluate --model openai:gpt-4o-mini --model openai:ft:gpt-4o-mini:org::abc --culture all "
        "--data-dir ~/CultureLLM/data --limit-per-task 300 --concurrency 32 --rpm 3000",
        # An empty folder stands for the CultureLLM data: its 52 missing files are listed and skipped.
        replace=(("~/CultureLLM/data", "{tmp}"), ("--limit-per-task 300", "--limit-per-task 2")),
        extra=("--out", "{tmp}/ev"),
        env=MOCK_OPENAI,
        stderr=("52 task files are in none of",),
        served=("gpt-4o-mini", "ft:gpt-4o-mini:org::abc"),
        check=evaluated(
            "{tmp}/ev",
            {
                "Arabic",
                "Bengali",
                "Chinese",
                "English",
                "German",
                "Korean",
                "Portuguese",
                "Spanish",
                "Turkish",
            },
            models=2,
            per_task=2,
        ),
    ),
    Entry(
        name="evaluate-resume",
        readme="python cli.py evaluate --resume runs/eval-local",
        replace=(("runs/eval-local", "{evalrun}"),),
        env=MOCK_OPENAI,
        check=evaluate_resumed,
    ),
    Entry(
        name="evaluate-export-lm-eval",
        readme="python cli.py evaluate --export-lm-eval runs/lm-eval-tasks --limit-per-task 300",
        replace=(("runs/lm-eval-tasks", "{tmp}/lm"), ("--limit-per-task 300", "--limit-per-task 2")),
        outputs=(
            "{tmp}/lm/cultureforge_german.yaml",
            "{tmp}/lm/cultureforge_german_offensive_detect_eval.yaml",
            "{tmp}/lm/data/cultureforge_german_offensive_detect_eval.jsonl",
            "{tmp}/lm/README.md",
        ),
        stdout=("lm_eval --include_path {tmp}/lm",),
        absent=("{tmp}/lm/manifest.json",),
    ),
    Entry(
        name="evaluate-wvs",
        readme="python cli.py evaluate --suite wvs --model openai:gpt-4o-mini --culture Arabic",
        extra=("--out", "{tmp}/wvs"),
        env=MOCK_OPENAI,
        served=("gpt-4o-mini",),
        outputs=("{tmp}/wvs/answers.jsonl", "{tmp}/wvs/report.md", "{tmp}/wvs/weak_questions/Arabic.jsonl"),
        stderr=("Arabic: 2 question(s) its countries never asked are skipped: Q36, Q226",),
        check=read_by_logprobs("{tmp}/wvs", questions=48),
    ),
    Entry(
        name="evaluate-hofstede",
        readme="python cli.py evaluate --suite hofstede --model openai:gpt-4o-mini --distribution samples "
        "--samples 10 --temperature 1",
        replace=(("--samples 10", "--samples 2"),),
        extra=("--out", "{tmp}/hofstede"),
        env=MOCK_OPENAI,
        served=("gpt-4o-mini",),
        outputs=("{tmp}/hofstede/results.json", "{tmp}/hofstede/hofstede_dimensions.png"),
        stdout=("report: {tmp}/hofstede/report.md",),
    ),
    Entry(
        name="pipeline-embedded",
        readme="python cli.py pipeline --culture Arabic --limit 5 --max-steps 20 --out runs/pipeline-ar",
        # Augment and build-dataset on the embedded models here; tests/test_pipeline.py's slow test runs
        # the same flags through train and both evaluations.
        replace=(("--limit 5 --max-steps 20", "--limit 1 --max-steps 2"), ("runs/pipeline-ar", "{tmp}/p")),
        extra=("--stop-after", "dataset"),
        outputs=("{tmp}/p/augment/manifest.json", "{tmp}/p/dataset/train.jsonl", "{tmp}/p/report.md"),
        absent=("{tmp}/p/train",),
        slow=True,
    ),
    Entry(
        name="pipeline-openai",
        readme="python cli.py pipeline --culture Arabic --generator openai:gpt-4o-mini --judge "
        "embed:openai:text-embedding-3-small --backend openai --base-model gpt-4o-mini-2024-07-18 --limit 5",
        replace=(("--limit 5", "--limit 1 --limit-per-task 2 --samples 2"),),
        extra=("--openai-base-url", "{finetune}", "--poll-interval", "0.05", "--out", "{tmp}/p"),
        env=MOCK_OPENAI,
        served=("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
        outputs=(
            "{tmp}/p/train/openai_job.json",
            "{tmp}/p/eval-wvs/results.json",
            "{tmp}/p/eval-hofstede/results.json",
            "{tmp}/p/eval-downstream/results.json",
            "{tmp}/p/report.md",
        ),
    ),
    Entry(
        name="pipeline-resume",
        readme="python cli.py pipeline --resume runs/pipeline-ar",
        replace=(("runs/pipeline-ar", "{pipeline}"),),
        extra=("--openai-base-url", "{finetune}", "--poll-interval", "0.05"),
        env=MOCK_OPENAI,
        outputs=("{pipeline}/eval-downstream/results.json", "{pipeline}/report.md"),
    ),
    Entry(
        # A server does not exit: test_readme_service_session runs it with README's curl commands.
        name="serve",
        readme="CULTURE_FORGE_TOKEN=$T python cli.py serve --port 8080 --runs-dir runs/ "
        "--limit openai:rpm=3000,tpm=400000,concurrency=64",
        long_running=True,
    ),
)
BY_NAME = {entry.name: entry for entry in ENTRIES}


def run_entry(entry: Entry, ctx: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the entry's command in a fresh `python cli.py` process; return it once it has exited."""
    words = [word.format(**ctx) for word in shlex.split(entry.command())]
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    env["HF_HUB_OFFLINE"] = "1"
    env.update((name, value.format(**ctx)) for name, value in entry.env)
    while "=" in words[0]:  # README's `NAME=value python cli.py ...`
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[0].endswith("python") and words[1] == "cli.py", words
    return subprocess.run(
        [sys.executable, *words[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


# -- what the placeholders stand for --------------------------------------------------------------


@pytest.fixture(scope="module")
def mock_server():
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as server:
        yield server


@pytest.fixture(scope="module")
def finetune_server():
    with FakeServer(api_key=FAKE_KEY) as server:
        yield server


@pytest.fixture
def mock(mock_server) -> str:
    return mock_server.base_url


@pytest.fixture
def finetune(finetune_server) -> str:
    return finetune_server.base_url


@pytest.fixture
def key() -> str:
    return FAKE_KEY


@pytest.fixture
def tmp(tmp_path) -> str:
    return str(tmp_path)


def run_against_mock(mock_server, *args: str) -> None:
    """A fixture's own `python cli.py ...` run, with the mock server as the OpenAI API; it must succeed."""
    proc = subprocess.run(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "OPENAI_API_KEY": FAKE_KEY,
            "OPENAI_BASE_URL": mock_server.base_url,
            "HF_HUB_OFFLINE": "1",
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def augment_run(tmp_path_factory, mock_server) -> Path:
    """runs/X: two seeds augmented through the mock server (its generator and its embeddings)."""
    out = tmp_path_factory.mktemp("augment") / "X"
    run_against_mock(
        mock_server,
        *["augment", "--quiet", "--limit", "2", "--out", str(out)],
        *["--generator", "openai:mock-model", "--judge", "embed:openai:mock-embed"],
        *["--base-url", mock_server.base_url],
    )
    assert json_lines(out / "samples.jsonl"), "the augment run kept no sample to build from"
    return out


@pytest.fixture
def run(augment_run, tmp_path) -> str:
    """A copy of the augment run for one test to write into."""
    return str(shutil.copytree(augment_run, tmp_path / "X"))


@pytest.fixture(scope="module")
def culturepark_run(tmp_path_factory, mock_server) -> Path:
    """runs/cp-all and runs/cp-ar: Arabic and German in cross mode, one seed, one line each, through the
    mock server (speakers, verifier and embeddings)."""
    out = tmp_path_factory.mktemp("culturepark") / "cp"
    run_against_mock(
        mock_server,
        *["culturepark", "--quiet", "--culture", "Arabic,German", "--mode", "cross"],
        *["--limit", "1", "--turns", "2", "--generator", "openai:mock-model", "--out", str(out)],
        *["--verifier", "llm:openai:mock-model", "--embedder", "embed:openai:mock-embed"],
    )
    assert json_lines(out / "opinions.jsonl"), "the culturepark run kept no opinion to build from"
    return out


@pytest.fixture
def cp(culturepark_run, tmp_path) -> str:
    """A copy of the culturepark run for one test to write into."""
    return str(shutil.copytree(culturepark_run, tmp_path / "cp"))


@pytest.fixture(scope="module")
def built(augment_run, tmp_path_factory) -> str:
    """An augment run with README's build-dataset output in it (dataset-ar), for the train commands."""
    ctx = {"run": str(shutil.copytree(augment_run, tmp_path_factory.mktemp("built") / "X"))}
    proc = run_entry(BY_NAME["build-dataset"], ctx)
    assert proc.returncode == 0, proc.stderr
    return ctx["run"]


@pytest.fixture
def job(finetune_server, built) -> str:
    """A job already created on the imitation server, for README's `--job` command to follow."""
    from openai import OpenAI

    client = OpenAI(api_key=FAKE_KEY, base_url=finetune_server.base_url, max_retries=0)
    train = Path(built) / "dataset-ar" / "train.jsonl"
    uploaded = client.files.create(file=(train.name, train.read_bytes()), purpose="fine-tune")
    return client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=uploaded.id).id


@pytest.fixture(scope="module")
def evaluate_run(tmp_path_factory, mock_server) -> Path:
    """runs/eval-local: German's shipped task, 3 items, answered by the mock server."""
    out = tmp_path_factory.mktemp("evaluate") / "eval"
    run_against_mock(
        mock_server,
        *["evaluate", "--quiet", "--model", "openai:mock-a", "--culture", "German"],
        *["--limit-per-task", "3", "--out", str(out)],
    )
    return out


@pytest.fixture
def evalrun(evaluate_run, tmp_path) -> str:
    """A copy of the evaluate run for one test to resume."""
    return str(shutil.copytree(evaluate_run, tmp_path / "eval"))


@pytest.fixture
def trained(trained_run) -> str:
    """runs/X/train: a real 2-step LoRA run of the embedded model (tests/conftest.py)."""
    return str(trained_run)


@pytest.fixture
def pipeline(tmp_path, mock_server, finetune_server) -> str:
    """runs/pipeline-ar stopped after its dataset: augment through the mock server, the rest to do."""
    out = tmp_path / "pipeline"
    run_against_mock(
        mock_server,
        *["pipeline", "--quiet", "--culture", "Arabic", "--limit", "1"],
        *["--generator", "openai:mock-model", "--judge", "embed:openai:mock-embed", "--backend", "openai"],
        *["--base-model", "gpt-4o-mini-2024-07-18", "--limit-per-task", "2", "--samples", "2"],
        *["--openai-base-url", finetune_server.base_url, "--stop-after", "dataset", "--out", str(out)],
    )
    assert (out / "dataset" / "train.jsonl").exists() and not (out / "train").exists()
    return str(out)


@pytest.fixture
def hostfile(tmp_path) -> str:
    path = tmp_path / "hostfile"
    path.write_text("gpu-node-1 slots=8\ngpu-node-2 slots=8\n", encoding="utf-8")
    return str(path)


# -- the tests ------------------------------------------------------------------------------------


def test_every_readme_command_has_one_entry():
    in_readme = readme_commands(README.read_text(encoding="utf-8"))
    names = [entry.readme for entry in ENTRIES]
    assert len(set(names)) == len(names), "two entries for one command"
    assert sorted(set(in_readme)) == sorted(names), (
        "README.md and ENTRIES disagree; "
        f"commands without an entry: {sorted(set(in_readme) - set(names))}, "
        f"entries no longer in README: {sorted(set(names) - set(in_readme))}"
    )
    for entry in ENTRIES:
        for old, _ in entry.replace:
            assert entry.readme.count(old) == 1, f"{entry.name}: {old!r} is not once in its command"


def test_readme_commands_are_read_from_every_code_block():
    text = "```bash\nbash setup.sh && .venv/bin/python cli.py augment\n```\n\n```bash\n# comment\n"
    text += "python cli.py train --a 1 \\\n    --b 2   # trailing\nOPENAI_API_KEY=... python cli.py x\n```\n"
    text += '```json\n{"cli": 1}\n```\n'
    assert readme_commands(text) == [
        ".venv/bin/python cli.py augment",
        "python cli.py train --a 1 --b 2",
        "OPENAI_API_KEY=... python cli.py x",
    ]


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(e, id=e.name, marks=[pytest.mark.slow] if e.slow else [])
        for e in ENTRIES
        if not e.long_running
    ],
)
def test_readme_command_runs(entry: Entry, request, mock_server):
    ctx = {name: request.getfixturevalue(name) for name in entry.placeholders()}
    asked_before = len(mock_server.requests(status=None))

    proc = run_entry(entry, ctx)

    assert proc.returncode == entry.exit_status, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if entry.exit_status == 2:
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert FAKE_KEY not in proc.stdout + proc.stderr
    for path in entry.outputs:
        assert Path(path.format(**ctx)).is_file(), f"{path.format(**ctx)} was not written"
    for path in entry.absent:
        assert not Path(path.format(**ctx)).exists(), f"{path.format(**ctx)} was written"
    for text in entry.stdout:
        assert text.format(**ctx) in proc.stdout, proc.stdout[-3000:]
    for text in entry.stderr:
        assert text.format(**ctx) in proc.stderr, proc.stderr[-3000:]
    asked = {r.body.get("model") for r in mock_server.requests(status=None)[asked_before:] if r.body}
    assert set(entry.served) <= asked, f"the mock server was asked for {asked}"
    if entry.check is not None:
        entry.check(ctx)


def test_readme_benchmark_command_answers_help():
    # Its options are changing (unusable answers); --help proves the module the README names runs.
    assert "python -m bench.augment_bench" in README.read_text(encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.augment_bench", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--repeat" in proc.stdout


def readme_curl_commands(text: str) -> list[str]:
    """The curl lines of README's service section, as written (comments dropped)."""
    section = text.split("## The service:", 1)[1].split("\n## ", 1)[0]
    lines = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL):
        lines += [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("curl ")]
    return lines


@pytest.mark.slow
def test_readme_service_session(tmp_path, mock_server):
    """README's serve command, then its curl commands in order, exactly as written but for the port,
    the job id and `--fail-with-body` (a 4xx or 5xx answer fails the command)."""
    from tests.loopback import free_loopback_port

    entry = BY_NAME["serve"]
    port = free_loopback_port()
    words = shlex.split(entry.readme)
    assert words[0] == "CULTURE_FORGE_TOKEN=$T" and words[1:3] == ["python", "cli.py"]
    args = [w.replace("8080", str(port)).replace("runs/", str(tmp_path / "runs")) for w in words[3:]]
    token = "readme-session-token"
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    # The API the jobs' openai: models reach is the loopback server, through the server's environment.
    env |= {"HF_HUB_OFFLINE": "1", "CULTURE_FORGE_TOKEN": token, "OPENAI_API_KEY": FAKE_KEY,
            "OPENAI_BASE_URL": mock_server.base_url}  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "cli.py", *args], cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(
                    f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {token}"}
                ).is_success:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, log.read_text()
            time.sleep(0.2)
        curls = readme_curl_commands(README.read_text(encoding="utf-8"))
        assert len(curls) == 6
        job_id = None
        outputs = []
        for line in curls:
            line = line.replace("localhost:8080", f"127.0.0.1:{port}").replace(
                "curl ", "curl -sS --fail-with-body ", 1
            )
            if "<id>" in line:
                line = line.replace("<id>", job_id)
            done = subprocess.run(
                ["bash", "-c", line],
                env={**env, "T": token},
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            outputs.append(done.stdout)
            if job_id is None:
                job_id = json.loads(done.stdout)["id"]
    finally:
        server.terminate()
        server.wait(timeout=60)
    submitted, status, cancelled, resumed, events, samples = outputs
    assert json.loads(status)["command"] == "augment"
    assert json.loads(cancelled)["status"] == "cancelled" and json.loads(resumed)["status"] == "queued"
    assert "event: end" in events and '"status": "completed"' in events.rsplit("event: end", 1)[1]
    assert len(samples.splitlines()) > 0 and all(json.loads(line)["text"] for line in samples.splitlines())
    assert FAKE_KEY not in log.read_text() + "".join(outputs)
    # uvicorn shuts down cleanly on SIGTERM, then ends by the signal it caught, as a process should.
    assert server.returncode in (0, -15) and "Traceback" not in log.read_text(), log.read_text()
