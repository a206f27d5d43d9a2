"""The per-seed graph, driven by scripted models: routing, re-asks, substitution and selection."""

import json

import pytest

from agents.providers.resilience import ModelCallFailed
from graphs.augment import AugmentContext, AugmentParams, augment_graph
from graphs.state import AugmentInput
from storage.records import Seed
from tests.fakes import RuleJudge, last_user_text, scripted_model

SEED = Seed(
    q_id="29",
    topic="SOCIAL VALUES",
    q_content="Men make better political leaders than women do",
    option="1. Agree 2. Disagree",
)

SYNONYMS = json.dumps(
    {
        "words": [
            {"word": "leaders", "synonyms": ["heads", "chiefs"]},
            {"word": "political", "synonyms": ["governmental"]},
            {"word": "politics", "synonyms": ["government"]},
        ]
    }
)


def is_synonym_request(kwargs) -> bool:
    return "response_format" in kwargs


async def run(model, judge, **params):
    return await augment_graph.ainvoke(
        AugmentInput(seed=SEED), context=AugmentContext(model, judge, AugmentParams(**params))
    )


async def test_full_flow_makes_one_paraphrase_call_and_one_synonym_call_per_kept_paraphrase():
    def responder(messages, kwargs):
        if is_synonym_request(kwargs):
            return SYNONYMS
        return (
            "1. Men are better political leaders than women.\n2. Men lead better in politics than women do."
        )

    model = scripted_model(responder)
    result = await run(model, RuleJudge(), n=2, m=10)
    usage = model.meter.as_dict()
    assert usage["paraphrase"]["calls"] == 1
    assert usage["synonyms"]["calls"] == 2
    assert result["stats"].paraphrases_accepted == 2
    stages = {s.stage for s in result["samples"]}
    assert stages == {"paraphrase", "synonym"}
    assert all(s.similarity >= 0.8 for s in result["samples"])


async def test_rejected_paraphrases_trigger_bounded_re_asks():
    def responder(messages, kwargs):
        if is_synonym_request(kwargs):
            return '{"words": []}'
        return "1. Men make better political leaders than women ever do."

    model = scripted_model(responder)
    judge = RuleJudge(banned=["ever"])
    result = await run(model, judge, n=3, max_rounds=3)
    assert result["stats"].paraphrase_rounds == 3
    assert model.meter.as_dict()["paraphrase"]["calls"] == 3
    # the same rejected text is judged once, not once per round
    assert judge.seen.count("Men make better political leaders than women ever do.") == 1
    assert result["samples"] == []


async def test_when_few_paraphrases_survive_the_seed_itself_is_substituted():
    def responder(messages, kwargs):
        if is_synonym_request(kwargs):
            return SYNONYMS
        return "nothing useful"

    model = scripted_model(responder)
    result = await run(model, RuleJudge(), n=2, max_rounds=1)
    assert model.meter.as_dict()["synonyms"]["calls"] == 1
    texts = {s.text for s in result["samples"]}
    assert "Men make better political heads than women do" in texts
    assert all(s.base == SEED.q_content for s in result["samples"])


async def test_m_caps_the_samples_and_judge_rejections_are_counted():
    def responder(messages, kwargs):
        if is_synonym_request(kwargs):
            return SYNONYMS
        return (
            "1. Men are better political leaders than women.\n2. Men lead better in politics than women do."
        )

    model = scripted_model(responder)
    result = await run(model, RuleJudge(banned=["chiefs"]), n=2, m=3)
    assert len(result["samples"]) == 3
    assert result["stats"].substitutions_rejected >= 1
    assert not any("chiefs" in s.text for s in result["samples"])


async def test_an_unusable_synonym_answer_skips_that_sentence_only():
    def responder(messages, kwargs):
        if is_synonym_request(kwargs):
            return "I cannot do JSON" if "Men are better" in last_user_text(messages) else SYNONYMS
        return (
            "1. Men are better political leaders than women.\n2. Men lead better in politics than women do."
        )

    model = scripted_model(responder)
    result = await run(model, RuleJudge(), n=2)
    assert result["stats"].synonym_calls_failed == 1
    assert any(s.stage == "synonym" for s in result["samples"])


async def test_a_transport_failure_that_outlasts_retries_fails_the_seed():
    def responder(messages, kwargs):
        return ConnectionError("connection refused")

    model = scripted_model(responder)
    with pytest.raises(ModelCallFailed, match="gave up after 3 attempts"):
        await run(model, RuleJudge())
    assert model.meter.as_dict()["paraphrase"]["attempts"] == 3


async def test_changed_polarity_words_never_reach_the_judge():
    def responder(messages, kwargs):
        if is_synonym_request(kwargs):
            return '{"words": []}'
        return "1. Men make worse political leaders than women do.\n2. Men never make better political leaders than women."

    judge = RuleJudge()
    result = await run(scripted_model(responder), judge, n=2, max_rounds=1)
    assert result["stats"].paraphrases_guarded == 2
    assert judge.seen == []


async def test_mirror_images_of_the_seed_never_reach_the_judge():
    def responder(messages, kwargs):
        if is_synonym_request(kwargs):
            return '{"words": []}'
        return "1. Women make better political leaders than men do.\n2. Men make better political leaders than women."

    judge = RuleJudge()
    result = await run(scripted_model(responder), judge, n=2, max_rounds=1)
    assert result["stats"].paraphrases_guarded == 1
    assert "Women make better political leaders than men do." not in judge.seen
    assert [s.text for s in result["samples"]] == ["Men make better political leaders than women."]
