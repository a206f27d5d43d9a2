"""Selection keeps the m most similar samples, spread across the paraphrases they come from."""

from agents.selector import ScoredCandidate, select_samples

SEED = "Family is very important in my life"


def para(text, score):
    return ScoredCandidate(text=text, stage="paraphrase", base=text, similarity=score)


def syn(text, base, score):
    return ScoredCandidate(text=text, stage="synonym", base=base, similarity=score)


def test_rounds_spread_picks_across_bases_best_first():
    a, b = "My family matters a lot to me", "Family matters greatly in my life"
    pool = [
        para(a, 0.90),
        syn("My kin matters a lot to me", a, 0.95),
        syn("My family counts a lot to me", a, 0.93),
        para(b, 0.85),
        syn("Family counts greatly in my life", b, 0.88),
    ]
    chosen = select_samples(pool, SEED, m=4)
    assert [c.text for c in chosen] == [
        "My kin matters a lot to me",
        "Family counts greatly in my life",
        "My family counts a lot to me",
        "Family matters greatly in my life",
    ]


def test_at_most_m_and_no_duplicates_or_seed_copies():
    pool = [
        para("Family is very important in my life!", 0.99),
        para("My family is very important to me", 0.9),
        syn("my family is very important to me", "x", 0.91),
    ] + [syn(f"Family is vital in my life {i}", SEED, 0.8 + i / 100) for i in range(10)]
    chosen = select_samples(pool, SEED, m=5)
    assert len(chosen) == 5
    texts = [c.text.lower() for c in chosen]
    assert len(set(texts)) == 5
    assert "family is very important in my life!" not in texts


def test_empty_pool_selects_nothing():
    assert select_samples([], SEED, m=10) == []
