"""`hf:` models: what a spec names, how concurrent calls share batches, and the real embedded model
answering in batches exactly as it answers alone, with and without a LoRA adapter."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

import agents.providers.hf_chat as hf
from agents.providers.factory import create_chat_model
from agents.providers.hf_chat import HFChat, HFModelPlan, resolve_hf_model, shared_prefix_length
from agents.providers.specs import ModelSpec, SpecError, parse_model_spec

# --- specs -------------------------------------------------------------------------------------


def model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}", encoding="utf-8")
    return path


def adapter_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}", encoding="utf-8")
    return path


def train_dir(path: Path, **summary) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return path


def test_hf_specs_parse():
    assert parse_model_spec("hf:local") == ModelSpec("hf", "local")
    assert (
        parse_model_spec("hf:HuggingFaceTB/SmolLM2-135M-Instruct").model
        == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    assert str(parse_model_spec("hf:/models/x")) == "hf:/models/x"
    with pytest.raises(SpecError, match="unknown model spec 'hf:'"):
        parse_model_spec("hf:")


def test_a_train_output_directory_is_a_spec_by_itself(tmp_path):
    run = train_dir(tmp_path / "run" / "train", base_model="local")
    assert parse_model_spec(str(run)) == ModelSpec("hf", str(run))
    with pytest.raises(SpecError, match="unknown model spec"):
        parse_model_spec(str(tmp_path))  # a directory without summary.json is not


def test_a_model_directory_and_an_adapter(tmp_path):
    base, adapter = model_dir(tmp_path / "base"), adapter_dir(tmp_path / "adapter")
    assert resolve_hf_model(str(base)) == HFModelPlan(str(base))
    assert resolve_hf_model(str(base), adapter) == HFModelPlan(str(base), str(adapter))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: t / "missing", "does not exist"),
        (lambda t: t / "a" / "b" / "missing", "does not exist"),
        (
            lambda t: (t / "empty").mkdir() or t / "empty",
            r"not a transformers model directory \(no config.json\)",
        ),
        (
            lambda t: adapter_dir(t / "adapter"),
            "is a LoRA adapter, not a model: give its base model and --adapter",
        ),
        (lambda t: (t / "w.bin").write_text("x") and t / "w.bin", "is a file, not a model directory"),
    ],
)
def test_bad_model_paths_are_one_line(tmp_path, make, message):
    with pytest.raises(SpecError, match=message) as caught:
        resolve_hf_model(str(make(tmp_path)))
    assert "\n" not in str(caught.value)


def test_an_uncached_hub_id_with_the_hub_off(monkeypatch):
    monkeypatch.setattr(hf, "_hub_offline", lambda: True)
    with pytest.raises(
        SpecError, match=r"hub is off \(HF_HUB_OFFLINE=1\): download it first \(hf download no-org/no-model\)"
    ):
        resolve_hf_model("no-org/no-model")


def test_an_adapter_directory_needs_adapter_config(tmp_path):
    base = model_dir(tmp_path / "base")
    (tmp_path / "not-adapter").mkdir()
    with pytest.raises(SpecError, match=r"--adapter .*not-adapter: no adapter_config.json in it"):
        resolve_hf_model(str(base), tmp_path / "not-adapter")
    with pytest.raises(SpecError, match="no such directory"):
        resolve_hf_model(str(base), tmp_path / "nowhere")


def test_a_train_directory_gives_its_base_and_adapter(tmp_path):
    base, adapter = model_dir(tmp_path / "base"), adapter_dir(tmp_path / "run" / "adapter")
    run = train_dir(tmp_path / "run", base_model=str(base), adapter_dir=str(adapter), merged_dir=None)
    assert resolve_hf_model(str(run)) == HFModelPlan(str(base), str(adapter))


def test_a_moved_train_directory_finds_its_adapter_beside_the_summary(tmp_path):
    base, adapter = model_dir(tmp_path / "base"), adapter_dir(tmp_path / "copied" / "adapter")
    run = train_dir(tmp_path / "copied", base_model=str(base), adapter_dir="runs/gone/train/adapter")
    assert resolve_hf_model(str(run)) == HFModelPlan(str(base), str(adapter))


def test_a_train_directory_without_adapter_gives_its_merged_or_full_model(tmp_path):
    merged = model_dir(tmp_path / "run" / "merged")
    run = train_dir(tmp_path / "run", base_model="local", adapter_dir=None, merged_dir=str(merged))
    assert resolve_hf_model(str(run)) == HFModelPlan(str(merged))
    full = model_dir(tmp_path / "full" / "model")
    run = train_dir(tmp_path / "full", base_model="local", method="full", model_dir=str(full))
    assert resolve_hf_model(str(run)) == HFModelPlan(str(full))


def test_bad_train_directories(tmp_path):
    run = train_dir(tmp_path / "run", base_model="local", adapter_dir=str(tmp_path / "gone"))
    with pytest.raises(SpecError, match="names no model that exists here"):
        resolve_hf_model(str(run))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SpecError, match="cannot read"):
        resolve_hf_model(str(tmp_path / "broken"))
    adapter = adapter_dir(tmp_path / "a")
    with pytest.raises(SpecError, match="brings its own adapter; drop --adapter"):
        resolve_hf_model(str(run), adapter)


def test_the_factory_wraps_hf_models_like_the_others(tmp_path):
    base, adapter = model_dir(tmp_path / "base"), adapter_dir(tmp_path / "adapter")
    model = create_chat_model(f"hf:{base}", adapter=adapter, flag="--model")  # nothing is loaded yet
    assert isinstance(model.chat, HFChat)
    assert model.chat.plan == HFModelPlan(str(base), str(adapter))
    # The adapter is part of the label, so the ledger never replays the base model's answers for it.
    assert model.spec == f"hf:{base}+{adapter}"
    assert model.parallelism == model.chat.max_batch == 16
    assert create_chat_model(f"hf:{base}").spec == f"hf:{base}"


def test_an_adapter_on_a_non_hf_model_is_refused(tmp_path):
    with pytest.raises(SpecError, match="only hf: models take an adapter"):
        create_chat_model("local", adapter=adapter_dir(tmp_path / "adapter"))


def test_shared_prefix_length_leaves_every_row_a_token():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2
    assert shared_prefix_length([[1, 2, 3]]) == 0
    assert shared_prefix_length([[9, 2], [1, 2]]) == 0


# --- batching, with a scripted model ------------------------------------------------------------


class ScriptedBatches:
    """Stands in for the model: answers each request with its own text, slowly, and records batches."""

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = seconds
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def __call__(self, loaded, requests):
        self.threads.add(threading.current_thread().name)
        self.batches.append([r.messages[-1]["content"] for r in requests])
        time.sleep(self.seconds)
        return [
            hf._Answer(f"re: {r.messages[-1]['content']}", 3, min(r.max_tokens, 2), "stop") for r in requests
        ]


@pytest.fixture
def scripted(monkeypatch):
    script = ScriptedBatches()
    monkeypatch.setattr(hf, "generate_batch", script)
    monkeypatch.setattr(HFChat, "load", lambda self: None)
    return script


async def test_calls_in_flight_share_batches_and_get_their_own_answers(scripted):
    chat = HFChat(base="local", max_batch=4)
    replies = await asyncio.gather(*(chat.ainvoke([HumanMessage(f"q{i}")], max_tokens=5) for i in range(10)))
    assert [r.text for r in replies] == [f"re: q{i}" for i in range(10)]
    assert replies[0].usage_metadata == {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    sizes = [len(b) for b in scripted.batches]
    assert sum(sizes) == 10 and max(sizes) <= 4
    assert len(sizes) <= 4  # the first call may run alone; the rest wait for full batches
    assert scripted.threads == {"local-compute_0"}  # all model work on the one local-compute thread


async def test_a_cancelled_caller_neither_blocks_nor_breaks_the_others(scripted):
    chat = HFChat(base="local", max_batch=4)
    first = asyncio.create_task(chat.ainvoke([HumanMessage("slow")]))
    await asyncio.sleep(0.05)  # its batch is running now
    waiting = [asyncio.create_task(chat.ainvoke([HumanMessage(f"w{i}")])) for i in range(3)]
    await asyncio.sleep(0.01)
    waiting[0].cancel()
    first.cancel()
    done = await asyncio.wait_for(asyncio.gather(*waiting[1:]), timeout=5)
    assert [r.text for r in done] == ["re: w1", "re: w2"]
    assert ["w0"] not in scripted.batches and all("w0" not in b for b in scripted.batches)


def test_a_closed_event_loop_mid_batch_does_not_wedge_the_model(scripted):
    chat = HFChat(base="local")

    async def leave_early():
        asyncio.get_running_loop().create_task(chat.ainvoke([HumanMessage("orphan")]))
        await asyncio.sleep(0.05)  # asyncio.run cancels the call and closes the loop mid-batch

    asyncio.run(leave_early())

    async def ask():
        return await asyncio.wait_for(chat.ainvoke([HumanMessage("next")]), timeout=5)

    assert asyncio.run(ask()).text == "re: next"


async def test_request_arguments_reach_the_batch(monkeypatch):
    seen = []

    def record(loaded, requests):
        seen.extend(requests)
        return [hf._Answer("x", 1, 1, "stop") for _ in requests]

    monkeypatch.setattr(hf, "generate_batch", record)
    monkeypatch.setattr(HFChat, "load", lambda self: None)
    chat = HFChat(base="local", seed=7)
    await chat.ainvoke([SystemMessage("s"), HumanMessage("u")], max_tokens=9, temperature=0.5, stop=["\n"])
    await chat.ainvoke([HumanMessage("u")], seed=3)
    first, second = seen
    assert first.messages == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert (first.max_tokens, first.temperature, first.seed, first.stop, first.sampled) == (
        9,
        0.5,
        7,
        ("\n",),
        True,
    )
    assert (second.temperature, second.seed, second.sampled) == (None, 3, False)


# --- the real embedded model --------------------------------------------------------------------

SYSTEM = "You are an Arabic chatbot that knows Arabic culture very well."
INSTRUCTIONS = (
    "Classify the text below. The possible labels are:\n- NOT: not offensive\n- OFF: offensive\n\nText: "
)
TEXTS = ["have a nice day my friend", "you are an idiot and everybody knows it", "the match starts at nine"]


def prompt(text: str) -> list:
    return [SystemMessage(SYSTEM), HumanMessage(f"{INSTRUCTIONS}{text}\n\nAnswer with NOT or OFF only.")]


async def answers(chat: HFChat, *, together: bool, **kwargs) -> list[str]:
    if together:
        replies = await asyncio.gather(*(chat.ainvoke(prompt(t), **kwargs) for t in TEXTS))
    else:
        replies = [await chat.ainvoke(prompt(t), **kwargs) for t in TEXTS]
    return [r.text for r in replies]


@pytest.mark.slow
async def test_batched_greedy_answers_equal_answers_one_at_a_time():
    """Left-padded rows differ from lone rows only in the last float bits (other matrix shapes, masked
    padding): what must hold is the same greedy tokens, which these prompts give with room to spare."""
    chat = HFChat(base="local")
    await chat.aload()
    alone = await answers(chat, together=False, max_tokens=12)
    chat.batch_sizes.clear()
    together = await answers(chat, together=True, max_tokens=12)
    assert all(a.strip() for a in together)
    assert together == alone
    assert max(chat.batch_sizes) >= 2  # they did share a batch (the first may have started alone)


@pytest.mark.slow
async def test_each_request_keeps_its_own_max_tokens_and_usage():
    chat = HFChat(base="local")
    replies = await asyncio.gather(
        chat.ainvoke(prompt(TEXTS[0]), max_tokens=2), chat.ainvoke(prompt(TEXTS[1]), max_tokens=10)
    )
    assert replies[0].usage_metadata["output_tokens"] <= 2
    assert replies[1].usage_metadata["output_tokens"] > 2
    assert replies[0].usage_metadata["input_tokens"] > 40


@pytest.mark.slow
async def test_seeded_sampling_does_not_depend_on_the_batch():
    chat = HFChat(base="local")
    alone = await answers(chat, together=False, max_tokens=10, temperature=1.0, seed=11)
    together = await answers(chat, together=True, max_tokens=10, temperature=1.0, seed=11)
    assert together == alone


@pytest.mark.slow
async def test_a_peft_adapter_is_applied(tmp_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from trainers.local_model import load_causal_lm, materialize, resolve_model

    # A copy of the base, not the shared one: get_peft_model changes the model it wraps.
    base = load_causal_lm(materialize(resolve_model("local")), dtype=torch.float32)
    torch.manual_seed(0)
    lora = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")

    plain = create_chat_model("hf:local")
    tuned = create_chat_model("hf:local", adapter=tmp_path / "adapter")
    assert isinstance((await tuned.chat.aload()).model, PeftModel)
    assert not isinstance((await plain.chat.aload()).model, PeftModel)
    base_answers = await answers(plain.chat, together=True, max_tokens=8)
    tuned_answers = await answers(tuned.chat, together=True, max_tokens=8)
    assert tuned_answers != base_answers
    assert tuned_answers == await answers(tuned.chat, together=False, max_tokens=8)

    # The same adapter named by a train output directory's summary.
    run = train_dir(tmp_path / "run", base_model="local", adapter_dir=str(tmp_path / "adapter"))
    from_run = create_chat_model(str(run), flag="--model")
    assert from_run.chat.plan == HFModelPlan("local", str(tmp_path / "adapter"))
    assert await answers(from_run.chat, together=True, max_tokens=8) == tuned_answers
