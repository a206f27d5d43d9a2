"""A seed stopped mid-graph continues from its last completed step (LangGraph checkpoints, one thread
per seed), even without the call ledger: completed steps are never run again."""

import json

import httpx
import pytest

from agents.providers.chat import ResilientChatModel
from agents.providers.factory import ModelServices, _openai_structured
from agents.providers.resilience import CallLimits
from graphs.augment import AugmentContext, AugmentParams
from graphs.augment_job import AugmentJob
from graphs.runner import run_items
from graphs.settings import AugmentSettings
from storage.checkpoints import CHECKPOINTS
from storage.records import Seed
from storage.run_store import RunStore, prepare_run_dir
from tests.fakes import RuleJudge, ScriptedChat

SEED = Seed(q_id="29", topic="SOCIAL VALUES", q_content="Men make better political leaders than women do")
PARAPHRASES = "1. Men are better political leaders than women.\n2. Men lead better in politics than women do."
SYNONYMS = json.dumps({"words": [{"word": "leaders", "synonyms": ["heads", "chiefs"]}]})


def answer(messages, kwargs):
    return SYNONYMS if "response_format" in kwargs else PARAPHRASES


def synonyms_unavailable(messages, kwargs):
    if "response_format" in kwargs:
        return httpx.ReadTimeout("the provider stopped answering")
    return PARAPHRASES


async def run(out, responder, *, resume=False):
    """One process's worth of `augment` on SEED, without a call ledger."""
    services = ModelServices(limits=CallLimits(max_attempts=2, backoff_initial_s=0.0, backoff_max_s=0.0))
    chat = ScriptedChat(responder=responder)
    model = ResilientChatModel(
        "scripted:test",
        chat,
        gate=services.gate,
        policy=services.policy,
        meter=services.meter,
        structured_args=_openai_structured,
    )
    report = await run_items(
        [SEED],
        AugmentJob(AugmentContext(model, RuleJudge(), AugmentParams(n=2, m=10))),
        settings=AugmentSettings(out=out, generator="scripted:test", n=2),
        services=services,
        store=RunStore(out),
        concurrency=services.limits.concurrency,
        resume=resume,
    )
    paraphrase_calls = sum("response_format" not in kwargs for _, kwargs in chat.calls)
    return report, paraphrase_calls, len(chat.calls) - paraphrase_calls


@pytest.fixture
def uninterrupted(tmp_path):
    out = prepare_run_dir(tmp_path / "uninterrupted")
    return out


async def test_a_seed_that_failed_in_the_synonym_step_resumes_there(tmp_path, uninterrupted):
    await run(uninterrupted, answer)

    out = prepare_run_dir(tmp_path / "resumed")
    report, paraphrase_calls, _ = await run(out, synonyms_unavailable)
    assert report.status == "completed_with_failures" and paraphrase_calls == 1
    assert (out / CHECKPOINTS).exists()

    report, paraphrase_calls, synonym_calls = await run(out, answer, resume=True)
    assert report.status == "completed"
    assert paraphrase_calls == 0  # generation and judging of paraphrases came from the checkpoint
    assert synonym_calls == 3  # the two kept paraphrases and the seed itself
    assert (out / "samples.jsonl").read_text() == (uninterrupted / "samples.jsonl").read_text()
    stats = json.loads((out / "manifest.json").read_text())["seeds"]["29"]
    assert stats["paraphrase_rounds"] == 1 and stats["paraphrases_accepted"] == 2


async def test_a_finished_seed_is_not_run_again(tmp_path):
    out = prepare_run_dir(tmp_path / "run")
    await run(out, answer)
    report, paraphrase_calls, synonym_calls = await run(out, answer, resume=True)
    assert report.status == "completed" and paraphrase_calls == synonym_calls == 0


def test_candidate_lists_are_stored_as_rows_and_come_back_as_the_same_records():
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from agents.selector import ScoredCandidate
    from graphs.state import CHECKPOINTED_ROWS, CHECKPOINTED_TYPES, JudgedCandidate, SeedStats
    from storage.checkpoints import RowsSerializer

    kept = [
        ScoredCandidate(f"Men are better leaders {i}", "synonym", "Men lead better", 0.9) for i in range(30)
    ]
    judged = [JudgedCandidate(c.text, c.stage, c.base, c.similarity, i % 2 == 0) for i, c in enumerate(kept)]
    checkpoint = {
        "v": 4,
        "id": "1",
        "channel_values": {
            "seed": SEED,
            "variants": kept,
            "judged": judged,
            "stats": SeedStats(),
            "seen": ["a"],
        },
    }
    rows = RowsSerializer(CHECKPOINTED_ROWS, allowed_msgpack_modules=list(CHECKPOINTED_TYPES))
    plain = JsonPlusSerializer(allowed_msgpack_modules=list(CHECKPOINTED_TYPES))

    stored = rows.dumps_typed(checkpoint)
    restored = rows.loads_typed(stored)

    assert restored["channel_values"] == checkpoint["channel_values"]
    assert all(type(c) is ScoredCandidate for c in restored["channel_values"]["variants"])
    assert all(type(c) is JudgedCandidate for c in restored["channel_values"]["judged"])
    assert rows.loads_typed(rows.dumps_typed(judged)) == judged  # a pending write holds one channel
    assert len(stored[1]) < len(plain.dumps_typed(checkpoint)[1])
