"""The embedded defaults for real: SmolLM2-135M-Instruct through llama.cpp, all-MiniLM-L6-v2 as judge."""

import json

import pytest

from cli import main

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_the_default_run_on_two_seeds_keeps_judged_samples(tmp_path, no_provider_env):
    out = tmp_path / "run"
    assert main(["augment", "--quiet", "--limit", "2", "--out", str(out)]) == 0

    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    manifest = json.loads((out / "manifest.json").read_text())
    assert records, "the embedded model kept nothing for two seeds"
    assert all(r["similarity"] >= 0.85 for r in records)  # the bar for local generators
    assert all(r["generator"] == "local" and r["judge"] == "embed:local" for r in records)
    assert {r["seed_id"] for r in records} <= {"27", "28"}
    for r in records:
        assert r["text"].strip().lower() != r["seed"].strip().lower()
        assert r["stage"] in ("paraphrase", "synonym")
    per_seed = {sid: sum(r["seed_id"] == sid for r in records) for sid in ("27", "28")}
    assert all(per_seed[sid] == manifest["seeds"][sid]["kept"] <= 10 for sid in per_seed)
    # local generators: one paraphrase call per seed, synonyms from WordNet with no call
    assert manifest["counts"]["llm_calls"] == 2
    assert manifest["usage_by_step"].keys() == {"paraphrase"}
    assert manifest["status"] == "completed"
    config = manifest["config"]
    # the defaults that depend on the generator, recorded as they were resolved
    assert (config["threshold"], config["max_rounds"], config["synonyms"]) == (0.85, 1, "wordnet")
    assert config["strict_meaning"] is True
    # both seeds' samples are the one-word WordNet substitutions the fidelity review read
    assert {r["text"] for r in records} >= {
        "One of my chief goals in life has been to make my parents proud",
        "When a mother works for pay, the kids suffer",
    }
    assert manifest["packages"]["llama-cpp-python"]


def test_local_sampling_is_repeatable_with_the_same_sample_seed(tmp_path, no_provider_env):
    first, second = tmp_path / "a", tmp_path / "b"
    flags = ["augment", "--quiet", "--limit", "1", "--n", "2", "--sample-seed", "3"]
    assert main([*flags, "--out", str(first)]) == 0
    assert main([*flags, "--out", str(second)]) == 0
    assert (first / "samples.jsonl").read_text() == (second / "samples.jsonl").read_text()
