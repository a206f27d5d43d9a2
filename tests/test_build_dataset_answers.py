"""Reading per-country WVS answer files: summary rows, missing columns, shadowing directories."""

from pathlib import Path

import pytest

from storage.wvs_answers import AnswersFileError, find_country_file, load_countries, read_country_answers

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "wvs" / "countries"
SHIPPED_COUNTRIES = ["ARG", "BGD", "BRA", "CHN", "DEU", "GRC", "IRQ", "JOR", "KOR", "MEX", "TUR", "USA"]


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def test_all_twelve_countries_are_shipped_with_their_citation():
    assert sorted(p.stem for p in SHIPPED.glob("*.csv")) == SHIPPED_COUNTRIES
    assert "doi:10.14281/18241.20" in (SHIPPED / "README.md").read_text(encoding="utf-8")


def test_summary_rows_are_not_respondents_even_when_only_avg_is_present():
    # IRQ ends with a lone "Avg" row (1200 respondents, 1203 lines); USA with Avg, Avg_First, Avg_Last.
    iraq = read_country_answers(SHIPPED / "IRQ.csv", "IRQ", ["36"])
    assert iraq.respondents == 1200
    assert iraq.counts["36"] == {-4: 1200}
    usa = read_country_answers(SHIPPED / "USA.csv", "USA", ["27"])
    assert usa.respondents == sum(usa.counts["27"].values()) == 2596


def test_missing_question_columns_are_named(tmp_path):
    path = write_csv(tmp_path / "FRA.csv", ["B_COUNTRY,B_COUNTRY_ALPHA,Q27", "250,FRA,1"])
    with pytest.raises(AnswersFileError, match=r"FRA\.csv: missing columns Q28, Q31$"):
        read_country_answers(path, "FRA", ["27", "28", "31"])


def test_a_file_without_the_country_columns_is_refused(tmp_path):
    path = write_csv(tmp_path / "FRA.csv", ["Q27,Q28", "1,2"])
    with pytest.raises(AnswersFileError, match="missing columns B_COUNTRY, B_COUNTRY_ALPHA"):
        read_country_answers(path, "FRA", ["27", "28"])


def test_rows_of_another_country_are_refused(tmp_path):
    path = write_csv(tmp_path / "FRA.csv", ["B_COUNTRY,B_COUNTRY_ALPHA,Q27", "250,FRA,1", "276,DEU,2"])
    with pytest.raises(AnswersFileError, match="line 3 has B_COUNTRY_ALPHA 'DEU', expected 'FRA'"):
        read_country_answers(path, "FRA", ["27"])


def test_blank_and_non_integer_cells_are_not_answers(tmp_path):
    path = write_csv(
        tmp_path / "FRA.csv",
        [
            "\ufeffB_COUNTRY,B_COUNTRY_ALPHA,Q27",
            "250,FRA,1",
            "250,FRA,",
            "250,FRA,n/a",
            "250,FRA,-1",
            "Avg,,0.5",
        ],
    )
    answers = read_country_answers(path, "FRA", ["27"])
    assert answers.respondents == 4
    assert answers.counts["27"] == {1: 1, -1: 1}


def test_a_users_directory_is_searched_before_the_shipped_one(tmp_path):
    mine = write_csv(tmp_path / "USA.csv", ["B_COUNTRY,B_COUNTRY_ALPHA,Q27", "840,USA,4"])
    assert find_country_file("USA", [tmp_path, SHIPPED]) == mine
    assert find_country_file("IRQ", [tmp_path, SHIPPED]) == SHIPPED / "IRQ.csv"
    loaded = load_countries(["USA", "USA"], ["27"], [tmp_path, SHIPPED])
    assert list(loaded) == ["USA"] and loaded["USA"].counts["27"] == {4: 1}


def test_an_unknown_country_names_the_directories_searched(tmp_path):
    with pytest.raises(AnswersFileError, match=r"no answers file FRA\.csv for country 'FRA' in: "):
        find_country_file("FRA", [tmp_path, SHIPPED])
