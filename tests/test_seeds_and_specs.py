"""Seed files and spec strings."""

import json

import pytest

from agents.providers.specs import SpecError, parse_judge_spec, parse_model_spec
from storage.seeds import DEFAULT_SEEDS, SeedFileError, load_seeds


def test_the_shipped_seed_file_has_the_50_wvs_seeds():
    seeds = load_seeds(DEFAULT_SEEDS)
    assert len(seeds) == 50
    assert seeds[0].q_id == "27"
    assert seeds[0].q_content == "One of my main goals in life has been to make my parents proud"
    assert all(s.option for s in seeds)


def test_ids_written_as_numbers_or_with_a_q_are_normalised(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        json.dumps({"q_id": 27, "q_content": "a"})
        + "\n\n"
        + json.dumps({"q_id": "Q28", "q_content": "b"})
        + "\n"
    )
    assert [s.q_id for s in load_seeds(path)] == ["27", "28"]


def test_duplicate_ids_and_empty_files_are_refused(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        json.dumps({"q_id": "1", "q_content": "a"})
        + "\n"
        + json.dumps({"q_id": "1", "q_content": "b"})
        + "\n"
    )
    with pytest.raises(SeedFileError, match=r":2: q_id '1' already used on line 1"):
        load_seeds(path)
    path.write_text("\n")
    with pytest.raises(SeedFileError, match="holds no seeds"):
        load_seeds(path)


def test_a_json_array_line_is_refused(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(SeedFileError, match=r":1: expected a JSON object, got list"):
        load_seeds(path)


@pytest.mark.parametrize(
    ("text", "provider", "model"),
    [
        ("local", "local", ""),
        ("local:/m.gguf", "local", "/m.gguf"),
        ("openai:gpt-4o", "openai", "gpt-4o"),
        ("google:gemini-2.0-flash", "google", "gemini-2.0-flash"),
        ("openai:org/model:v1", "openai", "org/model:v1"),
    ],
)
def test_model_specs(text, provider, model):
    spec = parse_model_spec(text)
    assert (spec.provider, spec.model) == (provider, model)
    assert str(spec) == text


@pytest.mark.parametrize("text", ["", "gpt-4o", "openai", "anthropic:claude", "openai:  "])
def test_bad_model_specs(text):
    with pytest.raises(SpecError, match="unknown model spec"):
        parse_model_spec(text)


def test_judge_specs():
    assert str(parse_judge_spec("embed:local")) == "embed:local"
    assert str(parse_judge_spec("llm:openai:gpt-4o-mini")) == "llm:openai:gpt-4o-mini"
    with pytest.raises(SpecError, match="unknown judge spec"):
        parse_judge_spec("llm:")
