"""The typed settings of each command's run: CLI flags land here (their help is each field's
description), the manifest stores a dump, and each settings object builds its own call limits and
graph parameters, so no knob or default is written out twice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from agents.providers.resilience import CallLimits
from storage.seeds import DEFAULT_SEEDS

PAPER_THRESHOLD = 0.8
# The embedded models: WordNet substitutions the embedder scores in 0.80-0.85 were mostly another
# sense ("for a miss", "the minors suffer"); above it they mostly kept the meaning.
LOCAL_THRESHOLD = 0.85


class RunSettings(BaseModel):
    """What every run on the shared runner takes: where it goes and how hard providers are pushed."""

    # No float setting may be inf or nan: an infinite timeout or rate overflowed deep in asyncio.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    # Settings whose change would change the results: a resumed run must keep them.
    RESULT_FIELDS: ClassVar[tuple[str, ...]] = ()

    out: Path | None = Field(
        default=None, description="Run directory to create (default runs/<UTC timestamp>)."
    )
    base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible server (overrides OPENAI_BASE_URL)."
    )
    concurrency: int = Field(default=8, gt=0, description="LLM calls in flight across the whole run.")
    # At least 1 a minute: a rate near 0 (1e-300) left the run waiting forever for its first call.
    rpm: float | None = Field(
        default=None, ge=1, description="Request rate limit per minute across the run (at least 1)."
    )
    tpm: float | None = Field(
        default=None,
        ge=1,
        description="Token rate limit per minute across the run, estimated before each call (at least 1).",
    )
    max_attempts: int = Field(
        default=6,
        gt=0,
        description="Attempts per LLM call on transient failures (429, 5xx, timeouts, malformed answers).",
    )
    timeout: float = Field(
        default=120.0, gt=0, description="Seconds before one LLM call attempt is abandoned."
    )

    def limits(self) -> CallLimits:
        return CallLimits(
            concurrency=self.concurrency,
            rpm=self.rpm,
            tpm=self.tpm,
            max_attempts=self.max_attempts,
            timeout_s=self.timeout,
        )


def _some_judge(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("at least one judge is needed")
    return value


# One or more judge specs; a candidate must pass them all.
JudgeSpecs = Annotated[list[str], AfterValidator(_some_judge)]


def is_local_spec(spec: str) -> bool:
    """Whether a generator spec names an embedded or local GGUF model."""
    return spec == "local" or spec.startswith("local:")


class AugmentSettings(RunSettings):
    RESULT_FIELDS: ClassVar[tuple[str, ...]] = (
        "seeds",
        "limit",
        "generator",
        "judge",
        "n",
        "m",
        "threshold",
        "max_rounds",
        "max_synonyms",
        "max_substitutions",
        "temperature",
        "sample_seed",
        "inversion_guard",
        "synonyms",
        "strict_meaning",
    )

    seeds: Path = Field(
        default=DEFAULT_SEEDS, description="Seed file: JSONL with q_id, q_content, optional topic and option."
    )
    limit: int | None = Field(default=None, gt=0, description="Process only the first K seeds.")
    generator: str = Field(
        default="local",
        description="Generator model spec: local, local:PATH.gguf, openai:MODEL or google:MODEL.",
    )
    judge: JudgeSpecs = Field(
        default_factory=lambda: ["embed:local"],
        description="Judge spec(s): embed:local, embed:openai:MODEL, embed:google:MODEL, llm:MODEL-SPEC. Repeat to chain judges; a candidate must pass all.",
    )
    n: int = Field(default=5, gt=0, le=20, description="Paraphrases to keep per seed (stage 1).")
    m: int = Field(default=10, gt=0, description="Samples to keep per seed in the end.")
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Minimum cosine similarity to the seed for the embedding judge. Default: 0.8 (the paper's), 0.85 for local generators, whose substitutions need a higher bar.",
    )
    max_rounds: int | None = Field(
        default=None,
        gt=0,
        le=10,
        description="Paraphrase requests per seed: the first plus re-asks while fewer than n are kept. Default: 2, or 1 for local generators (the strict check keeps about 1 in 200 of their rewrites: in the 50-seed default run a second round cost 50 calls for 2 more paraphrases).",
    )
    max_synonyms: int = Field(default=5, gt=0, le=5, description="Synonyms asked for per content word.")
    max_substitutions: int = Field(
        default=24, gt=0, description="Substituted sentences judged per kept paraphrase."
    )
    temperature: float = Field(
        default=0.7, ge=0.0, le=2.0, description="Sampling temperature of the generator."
    )
    inversion_guard: bool = Field(
        default=True,
        description="Drop candidates before judging that swap the seed's opposed words (boy/girl, men/women), flip its negation, change its polarity, modal or quantity words, or bring in an antonym of one of its words.",
    )
    synonyms: Literal["auto", "generator", "wordnet", "generator+wordnet"] = Field(
        default="auto",
        description="Where stage-2 synonyms come from: the generator (CultureLLM), the offline WordNet thesaurus (no model call), or the generator with each synonym confirmed by WordNet. auto: wordnet for local generators, generator otherwise.",
    )
    strict_meaning: bool | None = Field(
        default=None,
        description="Keep only candidates whose every content word matches a word of the seed (same lemma or WordNet synonym). Default: on for local generators, whose rewrites the judge cannot be trusted to check.",
    )
    sample_seed: int = Field(
        default=0, description="Random seed of local sampling, for repeatable local runs."
    )

    @model_validator(mode="after")
    def _resolve_generator_defaults(self) -> AugmentSettings:
        # Written straight into the fields so the manifest records the numbers that were used.
        local = self.is_local_generator()
        if self.threshold is None:
            self.__dict__["threshold"] = LOCAL_THRESHOLD if local else PAPER_THRESHOLD
        if self.max_rounds is None:
            self.__dict__["max_rounds"] = 1 if local else 2
        if self.synonyms == "auto":
            self.__dict__["synonyms"] = "wordnet" if local else "generator"
        if self.strict_meaning is None:
            self.__dict__["strict_meaning"] = local
        return self

    def is_local_generator(self) -> bool:
        return is_local_spec(self.generator)


class RejudgeSettings(RunSettings):
    """`rejudge`: the judge, threshold and m default to the source run's own (resolved by the command,
    so the manifest records what was used)."""

    RESULT_FIELDS: ClassVar[tuple[str, ...]] = ("source", "judge", "threshold", "m")

    source: Path = Field(description="The finished augment run whose candidates are judged again.")
    judge: JudgeSpecs = Field(description="Judge spec(s); default: the source run's own.")
    threshold: float = Field(
        ge=0.0, le=1.0, description="Similarity threshold; default: the source run's own."
    )
    m: int = Field(gt=0, description="Samples to keep per seed; default: the source run's own.")


class CultureParkSettings(RunSettings):
    """`culturepark`: which dialogues to hold, with which models, and how opinions are kept."""

    RESULT_FIELDS: ClassVar[tuple[str, ...]] = (
        "culture",
        "seeds",
        "limit",
        "mode",
        "style",
        "turns",
        "generator",
        "verifier",
        "embedder",
        "clusters",
        "near_duplicate",
        "temperature",
        "sample_seed",
        "answers_dir",
        "cultures_file",
    )

    culture: str = Field(
        default="Arabic",
        description="Culture whose people talk (e.g. Arabic), several separated by commas (Arabic,German), or 'all' for every culture.",
    )
    seeds: Path = Field(default=DEFAULT_SEEDS, description="Seed file of WVS questions to discuss.")
    limit: int | None = Field(default=None, gt=0, description="Discuss only the first K seeds (per culture).")
    mode: Literal["in", "cross"] = Field(
        default="in",
        description="in: two people of the culture who hold its attitude; cross: the culture's delegate and an English-speaking counterpart with their own view.",
    )
    style: Literal["guided", "free"] = Field(
        default="guided",
        description="guided: a moderator asks each turn for new angles, reasons, agreement or disagreement and explanation of the culture; free: each answers only what the other said.",
    )
    turns: int = Field(default=7, gt=0, le=20, description="Lines each speaker says.")
    generator: str = Field(
        default="local",
        description="Model spec of the speakers, the extractor and the rewriter: local, local:PATH.gguf, openai:MODEL or google:MODEL.",
    )
    verifier: str | None = Field(
        default=None,
        description="Judge of whether an opinion agrees with the culture's attitude: llm:MODEL-SPEC (default: llm:<generator>).",
    )
    embedder: str = Field(
        default="embed:local",
        description="Embedding spec for de-duplication: embed:local, embed:openai:MODEL or embed:google:MODEL.",
    )
    clusters: int = Field(
        default=5,
        gt=0,
        le=50,
        description="Opinions kept per dialogue: one per k-means cluster, nearest its centre.",
    )
    near_duplicate: float = Field(
        default=0.95,
        gt=0.0,
        le=1.0,
        description="Cosine similarity at which an opinion repeats an earlier one of the run and is dropped.",
    )
    temperature: float = Field(
        default=0.7, ge=0.0, le=2.0, description="Sampling temperature of the speakers."
    )
    sample_seed: int = Field(
        default=0, description="Random seed of local sampling and k-means, for repeatable runs."
    )
    answers_dir: list[Path] = Field(
        default_factory=list,
        description="Extra directory of <ISO3>.csv WVS answer files, searched before the shipped ones.",
    )
    cultures_file: Path | None = Field(
        default=None, description='JSON {"Culture": ["ISO3", ...]} adding to or replacing shipped cultures.'
    )

    @field_validator("verifier")
    @classmethod
    def _llm_verifier(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("llm:"):
            raise ValueError("must be llm:MODEL-SPEC (an embedding cannot tell agreement from contradiction)")
        return value

    @model_validator(mode="after")
    def _resolve_verifier(self) -> CultureParkSettings:
        # Written into the field so the manifest records the verifier that was used.
        if self.verifier is None:
            self.__dict__["verifier"] = f"llm:{self.generator}"
        return self


class ModelEntry(BaseModel):
    """One model of an evaluation: a spec, and a LoRA adapter `train` wrote, for `hf:` models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str
    adapter: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_spec(cls, value: Any) -> Any:
        # A bare spec is the usual way to name a model (a server job's "models": ["openai:gpt-4o"]).
        return {"spec": value} if isinstance(value, str) else value

    @property
    def name(self) -> str:
        return self.spec if self.adapter is None else f"{self.spec}+{self.adapter}"


class EvaluateSettings(RunSettings):
    """`evaluate`: which models answer which downstream tasks, on how many items, how often."""

    RESULT_FIELDS: ClassVar[tuple[str, ...]] = (
        "models",
        "culture",
        "task",
        "data_dir",
        "tasks_file",
        "limit_per_task",
        "samples",
        "temperature",
        "max_tokens",
        "max_chars",
        "sample_seed",
        "suite",
        "questions",
        "validation_of",
        "answers_dir",
        "cultures_file",
        "hofstede_countries",
        "distribution",
    )

    suite: Literal["downstream", "wvs", "hofstede"] = Field(
        default="downstream",
        description="What is measured: downstream (the culture classification tasks), wvs (answers to the WVS "
        "seed questions against the culture's survey answers) or hofstede (the VSM 2013 indices against the "
        "culture's countries' scores).",
    )
    models: list[ModelEntry] = Field(
        default_factory=lambda: [ModelEntry(spec="local")],
        description="Models side by side (repeat --model; --adapter DIR after an hf: model attaches a LoRA adapter to it).",
    )
    culture: str = Field(
        default="all", description="Culture(s) whose tasks run: one, several separated by commas, or 'all'."
    )
    task: list[str] | None = Field(default=None, description="Only these tasks (repeatable), by name.")
    data_dir: list[Path] = Field(
        default_factory=list,
        description="Folder in the CultureLLM data layout (the published data folder), searched before the shipped 9 files (repeatable).",
    )
    tasks_file: Path | None = Field(
        default=None,
        description="A task registry of your own (the columns of data/downstream/tasks.tsv), added to the shipped one.",
    )
    limit_per_task: int | None = Field(
        default=None,
        gt=0,
        description="A stratified sample of N items per task (fixed seed: the same items for every model).",
    )
    samples: int = Field(
        default=1, gt=0, le=20, description="Runs per item; K > 1 reports the mean and sd over runs."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature (0: greedy).")
    max_tokens: int = Field(default=16, gt=0, le=512, description="Tokens an answer may take.")
    max_chars: int = Field(default=2000, gt=0, description="Texts longer than this are cut (and counted).")
    sample_seed: int = Field(default=0, description="Seed of the item sample, the bootstrap and sampling.")
    distribution: Literal["auto", "samples", "probabilities"] = Field(
        default="auto",
        description="wvs/hofstede: how a model's answer distribution is read: the probability that its answer "
        "starts with each option (probabilities: hf:, local and openai: models, the last through logprobs), "
        "the options named by --samples answers at --temperature (samples), or probabilities where the model "
        "gives them and samples elsewhere (auto, the default).",
    )
    questions: Path | None = Field(
        default=None, description="wvs: only these questions (a file of Q ids, one a line, or a seeds file)."
    )
    validation_of: Path | None = Field(
        default=None,
        description="wvs: only the questions a build-dataset output directory held out for validation.",
    )
    answers_dir: list[Path] = Field(
        default_factory=list,
        description="wvs: extra directory of <ISO3>.csv WVS answer files, searched before the shipped ones.",
    )
    cultures_file: Path | None = Field(
        default=None,
        description='wvs: JSON {"Culture": ["ISO3", ...]} adding to or replacing shipped cultures.',
    )
    hofstede_countries: Path | None = Field(
        default=None,
        description="hofstede: your own culture -> country map (the form of data/hofstede/culture_countries.json).",
    )
    weak: int = Field(default=10, ge=0, description="wvs: questions per culture written to weak_questions/.")

    @field_validator("models")
    @classmethod
    def _some_model(cls, value: list[ModelEntry]) -> list[ModelEntry]:
        if not value:
            raise ValueError("at least one --model is needed")
        return value
