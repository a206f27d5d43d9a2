"""An OpenAI-compatible HTTP server for tests and benchmarks, on 127.0.0.1.

It answers `/v1/chat/completions`, `/v1/embeddings` and `/v1/models` with deterministic, meaningful
content, so the real pipeline (langchain-openai, our retry layer, the real embedding judge) runs
against it end to end:
- paraphrase requests get rewrites of the `Sentence:` line ("In my view, ..."),
- structured requests (`response_format`) get a synonym table or equivalence verdicts, as JSON,
- embedding requests get hashed bag-of-words vectors,
- downstream classification requests (`classification_answer`) get one of the listed labels, drawn
  from the text and the model name, and a refusal 1 time in 20,
- CulturePark requests, recognised by phrases of their prompts (`culturepark_answer`), get answers
  that let a whole CulturePark run work:
  - a dialogue turn (its system message says "You are taking part in a conversation about this
    question from the World Values Survey") gets one plain-text line of two sentences about the item's
    words, chosen by a hash of the messages and their number, so lines differ within and across
    dialogues; about one line in five speaks against the item and says "I do not believe" (`AGAINST`),
  - "List the distinct opinions" gets `{"opinions": [...]}`: the first two sentences of the quoted
    line, put in the first person,
  - "Does each opinion agree with this attitude" gets `{"verdicts": [...]}` for the numbered opinions:
    contradict for those that say `AGAINST`, unrelated for those under four words, entail otherwise,
  - "Rewrite this opinion so that it agrees with the attitude" gets the `Opinion:` line with the
    negation taken out, which the verification then entails.
  The phrases are matched loosely (numbered lines, a quoted line), not the templates word for word.
- a chat request with `logprobs: true` also gets the first answer token's `top_logprobs`: for a
  survey question a fixed distribution over its options led by the answer's own option, with some
  mass on words ("It", " I") and on an option-like distractor ("10" when 1 is an option and 10 is
  not), see `survey_top_logprobs`; for any other request, the first word of its answer.

Latency, injected faults (429 with Retry-After, 500, 503, hangs, malformed bodies), a share of
healthy but unusable structured answers (an empty synonym table, a verdict-less refusal, an
opinion list without JSON), a
requests-per-minute limit and an API key check are configurable; every request is logged.

    python -m bench.mock_openai_server --port 8011 --latency 0.2 --fault-rate 0.2 --rpm 600
    python -m bench.mock_openai_server --port 8011 --latency 0.2 --unusable 0.05
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import random
import re
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("429", "500", "503", "hang", "malformed")
# The log's `fault` for a 200 answer whose content the client cannot use.
UNUSABLE = "unusable"
# What a model that has nothing usable to say answers, per structured request: valid JSON with no
# entry for a synonym table, no JSON at all for the verdicts. Both are what a client must ask again for.
UNUSABLE_ANSWERS = {
    "SynonymTable": json.dumps({"words": []}),
    "EquivalenceVerdicts": "I am unable to compare these sentences.",
    "ExtractedOpinions": "I could not find any opinion in this line.",
}

_THESAURUS = {
    "important": ["significant", "essential", "vital"],
    "goals": ["aims", "objectives"],
    "main": ["chief", "principal"],
    "proud": ["pleased"],
    "parents": ["folks"],
    "children": ["kids"],
    "suffer": ["struggle"],
    "political": ["governmental"],
    "leaders": ["heads", "chiefs"],
    "education": ["schooling"],
    "business": ["corporate"],
    "executives": ["managers"],
    "jobs": ["positions", "posts"],
    "job": ["position", "post"],
    "scarce": ["rare", "limited"],
    "fulfilling": ["satisfying", "rewarding"],
    "work": ["labour"],
    "people": ["persons", "individuals"],
    "trust": ["rely on"],
    "justifiable": ["defensible"],
    "government": ["state"],
    "religion": ["faith"],
    "life": ["existence"],
    "right": ["entitlement"],
    "problem": ["issue"],
    "duty": ["obligation"],
    "society": ["community"],
    # The rest of the default seeds' content words, so the mock answers like a capable model that
    # finds a synonym for most words (gender and value words are left out on purpose).
    "acceptable": ["permissible", "tolerable"],
    "adult": ["grown-up"],
    "agree": ["concur"],
    "alcohol": ["liquor", "drink"],
    "areas": ["regions", "zones"],
    "asylum": ["refuge", "sanctuary"],
    "behavior": ["conduct"],
    "bribed": ["paid off"],
    "buy": ["purchase"],
    "candidates": ["nominees", "contenders"],
    "care": ["look after"],
    "cause": ["produce", "bring about"],
    "certain": ["particular"],
    "choice": ["option", "selection"],
    "collect": ["gather"],
    "come": ["arrive"],
    "comfortable": ["at ease"],
    "conflict": ["strife", "clash"],
    "consumption": ["use"],
    "counted": ["tallied"],
    "countries": ["nations", "states"],
    "country": ["nation"],
    "couples": ["pairs", "partners"],
    "coverage": ["reporting"],
    "crime": ["wrongdoing", "offence"],
    "cultural": ["societal"],
    "daily": ["everyday"],
    "depend": ["rely"],
    "development": ["growth", "progress"],
    "diversity": ["variety"],
    "drug": ["narcotic"],
    "e-mails": ["emails", "messages"],
    "earns": ["makes", "gets paid"],
    "easier": ["simpler"],
    "effects": ["consequences", "impacts"],
    "election": ["vote", "ballot"],
    "elections": ["votes", "ballots"],
    "employers": ["bosses"],
    "equal": ["equivalent", "identical"],
    "exchanged": ["swapped", "traded"],
    "fair": ["just", "equitable"],
    "fairly": ["justly", "equitably"],
    "faith": ["belief"],
    "favors": ["favours"],
    "fights": ["quarrels", "disputes"],
    "fills": ["occupies"],
    "following": ["subsequent"],
    "frequently": ["often", "regularly"],
    "generation": ["age group"],
    "genuine": ["real", "authentic"],
    "gives": ["provides", "offers"],
    "governing": ["ruling"],
    "harassment": ["intimidation"],
    "healthier": ["fitter"],
    "ideas": ["notions", "thoughts"],
    "immigrants": ["migrants", "newcomers"],
    "immigration": ["migration"],
    "increases": ["raises", "boosts"],
    "information": ["data", "facts"],
    "interfere": ["meddle", "intervene"],
    "internet": ["web"],
    "journalists": ["reporters"],
    "know": ["understand"],
    "knowledge": ["understanding", "know-how"],
    "lazy": ["idle", "indolent"],
    "leads": ["results"],
    "lives": ["existences"],
    "living": ["residing"],
    "long-term": ["lasting", "long-range"],
    "make": ["create"],
    "making": ["creating"],
    "means": ["signifies"],
    "military": ["armed forces", "army"],
    "money": ["cash", "funds"],
    "monitor": ["watch", "track"],
    "neighborhood": ["area", "vicinity"],
    "news": ["reports"],
    "occur": ["happen", "take place"],
    "offered": ["provided"],
    "offers": ["provides"],
    "office": ["post"],
    "officials": ["functionaries", "authorities"],
    "opportunities": ["chances", "openings"],
    "opposition": ["rival parties"],
    "party": ["faction"],
    "pay": ["wage", "salary"],
    "persecuted": ["oppressed"],
    "police": ["law enforcement"],
    "polls": ["ballots"],
    "prevented": ["stopped", "barred"],
    "priority": ["precedence"],
    "private": ["personal"],
    "problems": ["issues", "difficulties"],
    "provide": ["supply", "give"],
    "public": ["general public"],
    "racist": ["bigoted"],
    "rate": ["level"],
    "refugees": ["displaced people"],
    "risks": ["dangers", "hazards"],
    "robberies": ["thefts", "burglaries"],
    "run": ["operate"],
    "running": ["operating"],
    "sale": ["selling"],
    "science": ["research"],
    "sexual": ["sex-based"],
    "social": ["societal"],
    "spare": ["free"],
    "street": ["road"],
    "streets": ["roads"],
    "strengthens": ["reinforces", "bolsters"],
    "surveillance": ["monitoring"],
    "technology": ["tech"],
    "terms": ["respects"],
    "terrorism": ["terror attacks"],
    "things": ["matters"],
    "think": ["believe", "reckon"],
    "threatened": ["menaced", "intimidated"],
    "time": ["period"],
    "turn": ["round"],
    "tv": ["television"],
    "unemployment": ["joblessness"],
    "university": ["college"],
    "vacancies": ["openings"],
    "video": ["footage"],
    "view": ["opinion"],
    "violence": ["brutality"],
    "voters": ["electors"],
    "votes": ["ballots"],
    "working": ["employed"],
    "works": ["labours"],
    "belief": ["conviction"],
    "opinion": ["view"],
    "honestly": ["truthfully"],
    "frankly": ["candidly"],
    "say": ["state"],
}
_PARAPHRASE_FRAMES = (
    "In my view, {s}.",
    "I think that {s}.",
    "It is my belief that {s}.",
    "Honestly, {s}.",
    "To put it another way, {s}.",
    "As I see it, {s}.",
    "Frankly, {s}.",
    "In my opinion, {s}.",
)
_WORDS = re.compile(r"[A-Za-z']+")


def _lower_first(sentence: str) -> str:
    sentence = sentence.strip().rstrip(".?!")
    return sentence[:1].lower() + sentence[1:] if sentence[:2] != sentence[:2].upper() else sentence


def _field(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def paraphrase_answer(user_text: str) -> str:
    sentence = _field(user_text, "Sentence")
    count = int(m.group(1)) if (m := re.search(r"in (\d+) different ways", user_text)) else 5
    lines = [
        f"{i}. {frame.format(s=_lower_first(sentence))}"
        for i, frame in enumerate(_PARAPHRASE_FRAMES[:count], 1)
    ]
    return "Here are the rewrites:\n" + "\n".join(lines)


def synonym_answer(user_text: str) -> str:
    sentence = _field(user_text, "Sentence")
    words = []
    for word in dict.fromkeys(_WORDS.findall(sentence)):
        if word.lower() in _THESAURUS:
            words.append({"word": word, "synonyms": _THESAURUS[word.lower()]})
    return json.dumps({"words": words})


def verdict_answer(user_text: str, contradiction_markers: tuple[str, ...]) -> str:
    candidates = re.findall(r"^(\d+)\. (.+)$", user_text, re.MULTILINE)
    verdicts = [
        {
            "index": int(i),
            "verdict": "contradict" if any(m in text.lower() for m in contradiction_markers) else "entail",
        }
        for i, text in candidates
    ]
    return json.dumps({"verdicts": verdicts})


# -- CulturePark --------------------------------------------------------------------------------------

TURN_PHRASE = "You are taking part in a conversation about this question from the World Values Survey"
EXTRACT_PHRASE = "List the distinct opinions"
VERIFY_PHRASE = "Does each opinion agree with this attitude"
REWRITE_PHRASE = "Rewrite this opinion so that it agrees with the attitude"
# What a line against the item says, and so what verification calls a contradiction and a rewrite
# takes out. Only the dialogue's own against-lines say it.
AGAINST = "do not believe"
AGAINST_SHARE = 5  # one line in this many speaks against the item

_ITEM_LINE = re.compile(r"^(?:Statement|Question):\s*(.+)$", re.MULTILINE)
_NUMBERED = re.compile(r"^\s*(\d+)[.)]\s+(.+?)\s*$", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# Words that say nothing about the item's topic, left out of the topic of a line.
_STOP_WORDS = frozenset(
    """a an the this that these those of to in on at for with by from as and or but if than then so is
    are was were be been being has have had do does did will would should could can may might must it
    its i me my we our you your he she they them their his her one how what which who whom why when
    where whether there here not no nor very more most much many some any all each every other such
    own same also only just about into over under between following things thing way ways""".split()
)
_FOR = (
    "I strongly believe that {topic} matters",
    "I really think {topic} deserves our respect",
    "I am convinced that {topic} belongs at the heart of a good life",
    "I feel that {topic} should come first",
    "I hold that {topic} is worth defending",
    "I would say {topic} is part of who we are",
)
_AGAINST_VIEWS = (
    "I " + AGAINST + " that {topic} matters as much as people say",
    "I " + AGAINST + " that {topic} should decide how we live",
)
_REASONS = (
    "because it keeps families together",
    "since my parents taught me so",
    "as it gives people a sense of duty",
    "because our community depends on it",
    "since it brings stability to daily life",
    "because it is how we show respect to our elders",
    "as times have changed less than people think",
    "because everyone around me lives by it",
)
_EXPERIENCES = (
    "In my family we have always lived this way.",
    "In my neighbourhood almost everyone shares this view.",
    "My grandmother told me the same when I was young.",
    "At work I see every day what this means.",
    "In our village people still talk about it at every wedding.",
    "My friends and I argued about this for years.",
    "When I moved to the city I learned why it counts.",
)


def _hash(value: object) -> int:
    return int.from_bytes(hashlib.blake2b(json.dumps(value, sort_keys=True).encode(), digest_size=8).digest())


def _topic(item: str) -> str:
    """'the question of' two of the item's content words (its longest, in their order)."""
    words = [w.lower() for w in _WORDS.findall(item) if w.lower() not in _STOP_WORDS and len(w) > 2]
    chosen = sorted(dict.fromkeys(words), key=len, reverse=True)[:2]
    kept = [w for w in dict.fromkeys(words) if w in chosen]
    return "the question of " + " and ".join(kept) if kept else "this question"


def dialogue_answer(messages: list[dict[str, Any]]) -> str:
    """A speaker's next line: a view with a reason, then an experience; one in five speaks against."""
    system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    item = match.group(1) if (match := _ITEM_LINE.search(system)) else ""
    digest, length = _hash(messages), len(messages)
    views = _AGAINST_VIEWS if digest % AGAINST_SHARE == 0 else _FOR
    view = views[(digest // AGAINST_SHARE + length) % len(views)].format(topic=_topic(item))
    reason = _REASONS[(digest // 7) % len(_REASONS)]
    experience = _EXPERIENCES[(digest // 11 + length) % len(_EXPERIENCES)]
    return f"{view}, {reason}. {experience}"


def _quoted_line(user_text: str) -> str:
    """The line whose opinions are asked for: the last quoted text said by someone, else any quote."""
    said = re.findall(r'said:\s*"(.*)"\s*$', user_text, re.MULTILINE)
    if said:
        return said[-1]
    quoted = re.findall(r'"([^"]{8,})"', user_text)
    return quoted[-1] if quoted else ""


def _first_person(sentence: str) -> str:
    sentence = sentence.strip()
    if re.match(r"I\b", sentence):
        return sentence
    return "I can say that " + sentence[:1].lower() + sentence[1:]


def extraction_answer(user_text: str) -> str:
    """Up to two sentences of the quoted line that are not questions, each in the first person."""
    sentences = [s for s in _SENTENCE_END.split(_quoted_line(user_text)) if s.strip()]
    opinions = [_first_person(s) for s in sentences if not s.rstrip().endswith("?")][:2]
    return json.dumps({"opinions": opinions})


def opinion_verdicts_answer(user_text: str) -> str:
    """contradict for an opinion that speaks against (`AGAINST`), unrelated for a fragment, else entail."""
    verdicts = []
    for index, opinion in _NUMBERED.findall(user_text):
        if AGAINST in opinion.lower():
            verdict = "contradict"
        elif len(_WORDS.findall(opinion)) < 4:
            verdict = "unrelated"
        else:
            verdict = "entail"
        verdicts.append({"index": int(index), "verdict": verdict})
    return json.dumps({"verdicts": verdicts})


def rewrite_answer(user_text: str) -> str:
    """The opinion with its negation taken out ("I do not believe that" -> "I believe that")."""
    opinion = _field(user_text, "Opinion") or _quoted_line(user_text)
    return re.sub(r"\b(?:do not|don't)\s+believe", "believe", opinion, flags=re.IGNORECASE)


CLASSIFY_MARKER = "Answer with exactly one of these labels:"
# The share of classification requests a mock model answers with a refusal (an invalid answer).
REFUSAL_SHARE = 0.05
REFUSAL = "I'm sorry, I cannot classify this text."


def classification_answer(user_text: str, model: str) -> str | None:
    """A downstream-task request (prompts/classify_v1.jinja): one of its labels, drawn from a hash of
    the text and the model's name (so two mock models disagree on some items, reproducibly), now and
    then a refusal; None for any other request."""
    if CLASSIFY_MARKER not in user_text:
        return None
    labels = [label.strip() for label in user_text.split(CLASSIFY_MARKER)[-1].split(". Give")[0].split(",")]
    labels = [label for label in labels if label]
    text = user_text.split("Text:", 1)[-1].split(CLASSIFY_MARKER)[0].strip()
    draw = int(hashlib.sha256(f"{model}\n{text}".encode()).hexdigest(), 16)
    if not labels or (draw % 1000) / 1000 < REFUSAL_SHARE:
        return REFUSAL
    return labels[(draw // 1000) % len(labels)]


SURVEY_MARKER = "Answer with the number of one option only."
# A 1-10 scale names only its ends: "Answer with one whole number from 1 to 10 only."
_SURVEY_RANGE = re.compile(r"Answer with one whole number from (\d+) to (\d+) only\.")
_SURVEY_OPTION = re.compile(r"^(\d{1,2})\. \S", re.MULTILINE)
# The share of survey requests answered with something that names no option.
SURVEY_UNPARSABLE_SHARE = 0.05
SURVEY_UNPARSABLE = "It depends on the person."


def survey_options(user_text: str) -> list[str] | None:
    """The option numbers of a survey question (possibly none), or None for any other request."""
    scale = _SURVEY_RANGE.search(user_text)
    if SURVEY_MARKER not in user_text and scale is None:
        return None
    if scale is not None:
        return [str(code) for code in range(int(scale[1]), int(scale[2]) + 1)]
    return _SURVEY_OPTION.findall(user_text)


def survey_answer(user_text: str, model: str, seed: object) -> str | None:
    """A survey question (WVS seeds, VSM 2013 items): one of its numbered options, drawn from a hash of
    the question, the model's name and the request's seed (so K sampled answers differ, reproducibly),
    now and then an answer that names no option; None for any other request."""
    options = survey_options(user_text)
    if options is None:
        return None
    draw = int(hashlib.sha256(f"{model}\n{seed}\n{user_text}".encode()).hexdigest(), 16)
    if not options or (draw % 1000) / 1000 < SURVEY_UNPARSABLE_SHARE:
        return SURVEY_UNPARSABLE
    return options[(draw // 1000) % len(options)]


# Probabilities of the non-option first tokens of a survey answer (the rest of the mass beyond them
# and the options is on tokens too unlikely to be listed).
_SURVEY_WORDS = {"It": 0.04, " I": 0.02}
_SURVEY_DISTRACTOR = 0.02
_SURVEY_OPTIONS_MASS = 0.9
# An answer naming no option starts with "It" this likely; the options keep what is left of the mass.
_SURVEY_UNPARSABLE_START = 0.6


def survey_top_logprobs(user_text: str, model: str, answer: str) -> list[tuple[str, float]]:
    """The first answer token's likeliest alternatives (token, log-probability) for a survey question,
    likeliest first: every option with a weight fixed by a hash of the model, question and option,
    the answer's own option (written "3", " 3" and "3.") three times as likely, a few words, and "10"
    when 1 is an option but 10 is not (a token that starts with an option without being it)."""
    options = survey_options(user_text) or []
    probabilities: dict[str, float] = dict(_SURVEY_WORDS)
    options_mass = _SURVEY_OPTIONS_MASS
    if answer not in options:  # the answer names no option: it starts with "It"
        probabilities["It"] = _SURVEY_UNPARSABLE_START
        options_mass = 1.0 - sum(probabilities.values()) - 0.04
    if "1" in options and "10" not in options:
        probabilities["10"] = _SURVEY_DISTRACTOR
        options_mass -= _SURVEY_DISTRACTOR
    weights = {
        option: (1.0 + (_hash([model, user_text, option]) % 1000) / 250) * (3.0 if option == answer else 1.0)
        for option in options
    }
    total = sum(weights.values())
    for option, weight in weights.items():
        share = options_mass * weight / total
        if option == answer:
            probabilities.update(
                {option: 0.75 * share, f" {option}": 0.15 * share, f"{option}.": 0.1 * share}
            )
        else:
            probabilities[option] = share
    ranked = sorted(probabilities.items(), key=lambda item: (-item[1], item[0]))
    return [(token, math.log(probability)) for token, probability in ranked]


def first_token_logprobs(user_text: str, model: str, content: str, top_logprobs: int) -> dict[str, Any]:
    """A choice's `logprobs` for the answer's first token (a whole word stands in for a token), with
    its `top_logprobs` alternatives (at most 20, as the OpenAI API allows)."""
    if survey_options(user_text) is not None:
        alternatives = survey_top_logprobs(user_text, model, content)
        token = content if any(t == content for t, _ in alternatives) else "It"
    else:
        token = next(iter(content.split()), "")
        alternatives = [(token, math.log(0.95)), ("\n", math.log(0.01))]
    listed = {t: logprob for t, logprob in alternatives}
    chosen = listed.get(token, math.log(0.5))

    def entry(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    top = [entry(t, logprob) for t, logprob in alternatives[: max(0, min(top_logprobs, 20))]]
    return {"content": [{**entry(token, chosen), "top_logprobs": top}], "refusal": None}


def culturepark_answer(messages: list[dict[str, Any]], user_text: str) -> str | None:
    """The answer to a CulturePark request, or None when the messages are not one."""
    system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    if TURN_PHRASE in system:
        return dialogue_answer(messages)
    if EXTRACT_PHRASE in user_text:
        return extraction_answer(user_text)
    if VERIFY_PHRASE in user_text:
        return opinion_verdicts_answer(user_text)
    if REWRITE_PHRASE in user_text:
        return rewrite_answer(user_text)
    return None


def embed(text: str, dims: int = 64) -> list[float]:
    vector = [0.0] * dims
    for word in _WORDS.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "little") % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def pack_floats(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


@dataclass
class ServerConfig:
    latency_s: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    rpm: float | None = None
    api_key: str | None = None
    hang_s: float = 30.0
    retry_after_s: float = 0.2
    seed: int = 0
    contradiction_markers: tuple[str, ...] = ("not ", "opposite")
    # Share of structured answers (synonym tables, verdicts) that are unusable; see `is_unusable`.
    unusable_rate: float = 0.0
    # False plays a server that ignores `logprobs: true` (its answers then carry no logprobs).
    logprobs: bool = True


def is_unusable(seed: int, request_key: str, occurrence: int, rate: float) -> bool:
    """Whether the `occurrence`-th asking (0 first) of one request gets an unusable answer.

    Decided by a hash of (seed, request, occurrence), not by arrival order: the same run asks the
    same requests, so it meets the same unusable answers however its concurrent calls interleave,
    and a re-ask of the same request draws afresh (a model sampling again), so it is not unusable
    forever.
    """
    digest = hashlib.blake2b(f"{seed}\0{occurrence}\0{request_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < rate


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a client opening 32 connections at once had most
    # of its SYNs dropped and retried a second later, a stall no real provider shows.
    request_queue_size = 512


@dataclass
class RequestLog:
    at: float
    path: str
    status: int
    fault: str | None
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    arrived: float | None = None  # when the request was read, before the configured latency


class MockOpenAIServer:
    """Run with `with MockOpenAIServer(config) as server:`; `server.base_url` ends in /v1."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_file: str | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.log: list[RequestLog] = []
        # One JSON line per request (time, path, status, fault), for a client in another process.
        self._log_file = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115
        self._lock = threading.Lock()
        self._random = random.Random(self.config.seed)
        self._recent: deque[float] = deque()
        self._asked: dict[str, int] = {}  # times each structured request was asked, for is_unusable
        self._httpd = _Server((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> MockOpenAIServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which only runs once started
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> MockOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests(self, path_suffix: str = "/chat/completions", status: int | None = 200) -> list[RequestLog]:
        with self._lock:
            return [
                r for r in self.log if r.path.endswith(path_suffix) and (status is None or r.status == status)
            ]

    # -- decisions made under the lock so concurrent requests see a consistent state --
    def _admit(self) -> str | None:
        """None to serve normally, or the fault to inject."""
        with self._lock:
            now = time.monotonic()
            if self.config.rpm:
                while self._recent and now - self._recent[0] > 60.0:
                    self._recent.popleft()
                if len(self._recent) >= self.config.rpm:
                    return "rate-limit"
                self._recent.append(now)
            if self.config.fault_rate and self._random.random() < self.config.fault_rate:
                return self._random.choice(self.config.fault_kinds)
        return None

    def _unusable(self, schema_name: str, messages: list[Any]) -> bool:
        """Whether this structured request gets an unusable answer (counting it as asked)."""
        if not self.config.unusable_rate or schema_name not in UNUSABLE_ANSWERS:
            return False
        key = schema_name + json.dumps(messages, sort_keys=True)
        with self._lock:
            occurrence = self._asked.get(key, 0)
            self._asked[key] = occurrence + 1
        return is_unusable(self.config.seed, key, occurrence, self.config.unusable_rate)

    def _record(self, entry: RequestLog) -> None:
        with self._lock:
            self.log.append(entry)
            if self._log_file is not None:
                line = {
                    "at": entry.at,
                    "arrived": entry.arrived,
                    "path": entry.path,
                    "status": entry.status,
                    "fault": entry.fault,
                }
                self._log_file.write(json.dumps(line) + "\n")
                self._log_file.flush()

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes; with Nagle's algorithm on, the client's delayed
            # ACK would hold the body back ~40 ms per request.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output clean
                return

            def _send(
                self,
                status: int,
                payload: Any,
                headers: dict[str, str] | None = None,
                raw: bytes | None = None,
            ) -> None:
                body = raw if raw is not None else json.dumps(payload).encode()
                pending, self._pending_log = getattr(self, "_pending_log", None), None
                if pending is not None:
                    # Logged before the answer goes out: a client that has its answer sees it logged.
                    server._record(RequestLog(time.time(), status=status, **pending))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _error(
                self, status: int, message: str, kind: str, headers: dict[str, str] | None = None
            ) -> None:
                self._send(status, {"error": {"message": message, "type": kind, "code": None}}, headers)

            def _authorised(self) -> bool:
                expected = server.config.api_key
                return expected is None or self.headers.get("Authorization") == f"Bearer {expected}"

            def do_GET(self) -> None:
                if not self._authorised():
                    server._record(RequestLog(time.time(), self.path, 401, None, None))
                    return self._error(401, "Incorrect API key provided.", "invalid_request_error")
                if self.path.rstrip("/").endswith("/models"):
                    server._record(RequestLog(time.time(), self.path, 200, None, None))
                    return self._send(
                        200, {"object": "list", "data": [{"id": "mock-model", "object": "model"}]}
                    )
                self._error(404, f"no route {self.path}", "not_found")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    return self._error(400, "request body is not JSON", "invalid_request_error")
                headers = {k.lower(): v for k, v in self.headers.items() if k.lower() != "authorization"}
                if not self._authorised():
                    server._record(RequestLog(time.time(), self.path, 401, None, body, headers))
                    return self._error(401, "Incorrect API key provided.", "invalid_request_error")
                arrived = time.time()
                fault = server._admit()
                if server.config.latency_s:
                    time.sleep(server.config.latency_s)
                self._pending_log = {
                    "path": self.path,
                    "fault": fault,
                    "body": body,
                    "headers": headers,
                    "arrived": arrived,
                }
                self._serve(body, fault)

            def _serve(self, body: dict[str, Any], fault: str | None) -> int:
                retry = {"Retry-After": f"{server.config.retry_after_s:g}"}
                if fault == "rate-limit":
                    self._error(
                        429, "Rate limit reached for requests per minute.", "rate_limit_exceeded", retry
                    )
                    return 429
                if fault == "429":
                    self._error(429, "Rate limit reached.", "rate_limit_exceeded", retry)
                    return 429
                if fault in ("500", "503"):
                    self._error(int(fault), "The server had an error.", "server_error")
                    return int(fault)
                if fault == "hang":
                    time.sleep(server.config.hang_s)
                    self._error(504, "upstream timed out", "server_error")
                    return 504
                if fault == "malformed":
                    self._send(200, None, raw=b'{"id": "chatcmpl-broken", "choices": [')
                    return 200
                if self.path.endswith("/embeddings"):
                    inputs = body.get("input")
                    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
                    # The OpenAI SDK asks for base64 (packed little-endian float32), as the real API allows.
                    packed = body.get("encoding_format") == "base64"
                    data = [
                        {
                            "object": "embedding",
                            "index": i,
                            "embedding": pack_floats(embed(str(t))) if packed else embed(str(t)),
                        }
                        for i, t in enumerate(texts)
                    ]
                    self._send(
                        200,
                        {
                            "object": "list",
                            "data": data,
                            "model": body.get("model"),
                            "usage": {"prompt_tokens": 1, "total_tokens": 1},
                        },
                    )
                    return 200
                if not self.path.endswith("/chat/completions"):
                    self._error(404, f"no route {self.path}", "not_found")
                    return 404
                messages = body.get("messages") or []
                user_text = next(
                    (m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), ""
                )
                if isinstance(user_text, list):
                    user_text = " ".join(part.get("text", "") for part in user_text if isinstance(part, dict))
                schema_name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name", "")
                if server._unusable(schema_name, messages):
                    content = UNUSABLE_ANSWERS[schema_name]
                    self._pending_log["fault"] = UNUSABLE
                elif (park := culturepark_answer(messages, user_text)) is not None:
                    content = park
                elif (label := classification_answer(user_text, str(body.get("model", "")))) is not None:
                    content = label
                elif (
                    option := survey_answer(user_text, str(body.get("model", "")), body.get("seed"))
                ) is not None:
                    content = option
                elif schema_name == "SynonymTable":
                    content = synonym_answer(user_text)
                elif schema_name == "EquivalenceVerdicts":
                    content = verdict_answer(user_text, server.config.contradiction_markers)
                else:
                    content = paraphrase_answer(user_text)
                prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
                completion_tokens = len(content.split())
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
                if body.get("logprobs") is True and server.config.logprobs:
                    choice["logprobs"] = first_token_logprobs(
                        user_text, str(body.get("model", "")), content, int(body.get("top_logprobs") or 0)
                    )
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(server.log)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "mock-model"),
                        "choices": [choice],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                )
                return 200

        return Handler


def share(text: str) -> float:
    """argparse type of a share in [0, 1] (the message names the value)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail")
    parser.add_argument(
        "--fault-kinds", default=",".join(FAULT_KINDS), help="comma-separated: " + ",".join(FAULT_KINDS)
    )
    parser.add_argument(
        "--unusable",
        type=share,
        default=0.0,
        help="share of structured answers (synonym tables, verdicts, opinion lists) that are unusable, in [0, 1]",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the faults and unusable answers")
    parser.add_argument("--rpm", type=float, help="requests per minute before answering 429")
    parser.add_argument("--api-key", help="require this bearer key")
    parser.add_argument("--log", help="append one JSON line per request to this file")
    args = parser.parse_args()
    config = ServerConfig(
        latency_s=args.latency,
        fault_rate=args.fault_rate,
        fault_kinds=tuple(k for k in args.fault_kinds.split(",") if k),
        rpm=args.rpm,
        api_key=args.api_key,
        seed=args.seed,
        unusable_rate=args.unusable,
    )
    server = MockOpenAIServer(config, port=args.port, log_file=args.log)
    print(f"mock OpenAI server on {server.base_url}", flush=True)
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
