"""Small text helpers shared by the agents."""

from __future__ import annotations

import re
from functools import lru_cache

_NON_WORD = re.compile(r"[^\w\s]", re.UNICODE)
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Case-, punctuation- and spacing-insensitive form used to detect copies and duplicates.

    Cached: the same candidate is compared at every stage (parse, substitution, selection)."""
    return _SPACES.sub(" ", _NON_WORD.sub(" ", text.casefold())).strip()


def is_trivial_copy(candidate: str, seed: str) -> bool:
    """True when the candidate differs from the seed only by case, punctuation or spacing."""
    return normalize(candidate) == normalize(seed)


def word_count(text: str) -> int:
    return len(normalize(text).split())


# Words that carry grammar rather than content, written out here (scikit-learn's list cost ~200 MB
# and 1.4 s of import for one constant). They are never substituted and need no counterpart when a
# paraphrase is compared with its seed.
FUNCTION_WORDS = frozenset(
    """
    a an the this that these those there here
    i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves one ones oneself
    who whom whose which what whatever whoever whichever when whenever where wherever why how
    and or but nor so yet if then than because since unless until while whereas whether though although
    as of at by for from in into on onto off out over under up down upon with within without about
    above below across after against along among around before behind beneath beside besides between
    beyond during except inside near outside past per through throughout till toward towards via
    to be is am are was were been being do does did doing done have has had having
    get gets got getting let lets
    also else even just only still again ever further once quite rather really very too
    s t d ll m re ve
    """.split()
)

# Words that set a statement's polarity, modality, quantity or degree. Swapping one ("should" ->
# "could", "more" -> "less", "always" -> "often", "better" -> "fuller") changes what a respondent
# agrees with, so they are never substituted, and a paraphrase must keep the same ones.
KEY_WORDS = frozenset(
    """
    not no never nor none nobody nothing neither cannot without
    should must shall will would can could may might ought need needs
    all every each any some many much more most less least few fewer fewest enough several
    always often usually sometimes rarely seldom frequently occasionally almost nearly hardly
    only just even too very quite really entirely completely fully partly
    first last next same other another equal equally
    good better best bad worse worst right wrong fair fairly unfair important unimportant rich poor
    true false certain sure possible impossible likely unlikely
    agree disagree because unless although despite
    """.split()
)

# Verbs whose meaning comes from their object ("make proud", "have a right", "do well"): WordNet's
# synonyms for them ("do", "get", "hold", "feature") are wrong in nearly every survey sentence.
LIGHT_VERBS = frozenset(
    "make makes made making give gives gave given giving take takes took taken taking come comes came "
    "coming go goes went gone going put puts keep keeps kept run runs ran running set sets turn turns".split()
)

# The frames survey items are asked in ("In terms of ...", "the following", "In your view").
FRAME_WORDS = frozenset("terms following view think opinion".split())
