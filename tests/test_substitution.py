"""Synonym tables are parsed leniently, and substitution replaces whole content words only."""

import pytest

from agents.json_answers import MalformedOutput
from agents.substitutor import parse_synonym_table, render_synonym_request, substitute
from prompts import SynonymTable, WordSynonyms

SENTENCE = "Men make better political leaders than women do"


def table(**words: list[str]) -> SynonymTable:
    return SynonymTable(words=[WordSynonyms(word=w, synonyms=s) for w, s in words.items()])


class TestParsing:
    def test_the_schema_shape(self):
        raw = '{"words": [{"word": "leaders", "synonyms": ["heads", "chiefs"]}]}'
        assert parse_synonym_table(raw) == table(leaders=["heads", "chiefs"])

    def test_fenced_json_after_chatter(self):
        raw = 'Sure!\n```json\n{"words": [{"word": "better", "synonyms": ["superior"]}]}\n```'
        assert parse_synonym_table(raw) == table(better=["superior"])

    def test_a_plain_word_table(self):
        assert parse_synonym_table('{"political": ["governmental"], "note": "x"}') == table(
            political=["governmental"]
        )

    def test_truncated_json_keeps_the_entries_before_the_cut(self):
        raw = '{"words": [{"word": "leaders", "synonyms": ["heads", "chiefs"]}, {"word": "political", "synon'
        parsed = parse_synonym_table(raw)
        assert parsed.words[0] == WordSynonyms(word="leaders", synonyms=["heads", "chiefs"])

    def test_bad_entries_are_skipped_and_long_lists_capped(self):
        raw = '{"words": [42, {"word": "men"}, {"word": "women", "synonyms": ["a","b","c","d","e","f","g"]}]}'
        parsed = parse_synonym_table(raw, max_synonyms=3)
        assert parsed == table(women=["a", "b", "c"])

    @pytest.mark.parametrize("raw", ["", "no json here", "[1, 2", "```\n```", '{"words": []}'])
    def test_garbage_is_malformed(self, raw):
        with pytest.raises(MalformedOutput):
            parse_synonym_table(raw)

    def test_request_names_the_sentence(self):
        messages = render_synonym_request(SENTENCE, 5)
        assert SENTENCE in messages[-1]["content"]
        assert "up to 5 synonyms" in messages[-1]["content"]


class TestSubstitution:
    def test_one_word_at_a_time_interleaved_across_words(self):
        found = substitute(
            SENTENCE, table(leaders=["heads", "chiefs"], political=["governmental"]), max_candidates=10
        )
        assert [s.text for s in found] == [
            "Men make better political heads than women do",
            "Men make better governmental leaders than women do",
            "Men make better political chiefs than women do",
        ]

    @pytest.mark.parametrize("word", ["better", "should", "more", "never", "always", "only", "right"])
    def test_polarity_modal_and_quantity_words_are_never_replaced(self, word):
        sentence = f"Men {word} lead"
        assert substitute(sentence, table(**{word: ["other"]}), max_candidates=5) == []

    def test_frame_words_are_never_replaced(self):
        sentence = "In terms of the effects, do you agree with the following"
        found = substitute(
            sentence, table(terms=["adjectives"], following=["chase"], agree=["concur"]), max_candidates=5
        )
        assert found == []

    def test_the_article_follows_the_new_word(self):
        found = substitute(
            "It is a duty to take a job", table(duty=["obligation"], job=["occupation"]), max_candidates=5
        )
        assert [s.text for s in found] == [
            "It is an obligation to take a job",
            "It is a duty to take an occupation",
        ]
        back = substitute("An obligation", table(obligation=["duty"]), max_candidates=5)
        assert back[0].text == "A duty"

    def test_a_synonym_check_vetoes_proposals(self):
        found = substitute(
            SENTENCE,
            table(leaders=["heads", "workers"]),
            max_candidates=5,
            check=lambda word, synonym: synonym != "workers",
        )
        assert [s.synonym for s in found] == ["heads"]

    def test_case_is_kept(self):
        found = substitute("Men and MEN", table(men=["males"]), max_candidates=5)
        assert [s.text for s in found] == ["Males and MALES"]
        acronym = substitute("TV news", table(TV=["television"]), max_candidates=5)
        assert acronym[0].text == "television news"
        lowered = substitute("the Family matters", table(family=["Kin"]), max_candidates=5)
        assert lowered[0].text == "the Kin matters"

    def test_whole_words_only(self):
        found = substitute("Women and men", table(men=["males"]), max_candidates=5)
        assert [s.text for s in found] == ["Women and males"]

    def test_words_not_in_the_sentence_and_function_words_are_ignored(self):
        found = substitute(SENTENCE, table(dogs=["hounds"], than=["as"], do=["does"]), max_candidates=5)
        assert found == []

    def test_useless_synonyms_are_dropped(self):
        bad = ["LEADERS", "", "a very long phrase of many words", "lead3rs", "<b>x</b>"]
        assert substitute(SENTENCE, table(leaders=bad), max_candidates=10) == []

    def test_max_candidates_caps_the_list(self):
        found = substitute(
            SENTENCE, table(leaders=["heads", "chiefs", "rulers"], women=["females"]), max_candidates=2
        )
        assert len(found) == 2

    def test_role_swaps_opposites_and_names_are_refused(self):
        sentence = "A university education is more important for a boy than for a girl"
        offered = table(boy=["girl", "lad"], education=["Kathryn", "schooling"], important=["unimportant"])
        assert [s.text for s in substitute(sentence, offered, max_candidates=10)] == [
            "A university education is more important for a lad than for a girl",
            "A university schooling is more important for a boy than for a girl",
        ]

    def test_phrases_given_as_words_are_ignored(self):
        assert substitute(SENTENCE, table(**{"political leaders": ["politicians"]}), max_candidates=5) == []


def test_content_words_skip_function_words_and_repeats():
    from agents.substitutor import content_words

    assert content_words("When a mother works for pay, the children suffer; the mother") == [
        "mother",
        "works",
        "pay",
        "children",
        "suffer",
    ]


def test_the_request_schema_restricts_words_to_the_sentence():
    from agents.substitutor import synonym_schema

    schema = synonym_schema("Men elect capable leaders", 3).json_schema
    entry = next(iter(schema["$defs"].values()))
    assert entry["properties"]["word"]["enum"] == ["Men", "elect", "capable", "leaders"]
    assert entry["properties"]["synonyms"]["maxItems"] == 3
    assert schema["properties"]["words"]["maxItems"] == 4


def test_an_answer_that_fits_the_narrowed_schema_validates_as_the_general_table():
    import json

    import jsonschema

    from agents.substitutor import synonym_schema

    schema = synonym_schema("Men make better leaders", 3)
    answer = {"words": [{"word": "leaders", "synonyms": ["heads", "chiefs"]}]}
    jsonschema.validate(answer, schema.json_schema)
    assert schema.model.model_validate_json(json.dumps(answer)) == table(leaders=["heads", "chiefs"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"words": [{"word": "women", "synonyms": ["ladies"]}]}, schema.json_schema)


def test_the_narrowed_schema_compiles_to_a_llama_cpp_grammar_that_only_allows_its_words():
    import json

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from agents.substitutor import synonym_schema

    grammar = json_schema_to_gbnf(json.dumps(synonym_schema("Men elect capable leaders", 3).json_schema))
    word_rule = next(line for line in grammar.splitlines() if line.startswith("WordSynonyms-word ::="))
    assert (
        word_rule == 'WordSynonyms-word ::= "\\"Men\\"" | "\\"elect\\"" | "\\"capable\\"" | "\\"leaders\\""'
    )
