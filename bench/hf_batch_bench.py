"""Items/s of batched against one-at-a-time generation for `hf:` models (the embedded SmolLM2 by default).

    .venv/bin/python -m bench.hf_batch_bench --items 32 --max-tokens 8 --batch 16 --repeat 2

The prompts are evaluate's own: the classification prompt of the shipped downstream tasks (culture
system prompt, label list, the item's text), --per-task items of one task after another, the order in
which evaluate asks them. Three ways
of answering the same items, all greedy:
- one at a time: each call awaited before the next (an HFChat with max_batch 1);
- batched: all items in flight at once on the HFChat, which groups them into batches of --batch;
- through the factory: `create_chat_model(spec)` with --batch concurrency, as evaluate calls it (gate,
  retries, usage meter), so the dynamic batching is measured where it is used.
The issue asks for batched >= 4x one-at-a-time on CPU. It also counts how many batched answers equal
their one-at-a-time answer: greedy decoding of a left-padded row can differ in the last float bits,
which rarely changes a token.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from langchain_core.messages import convert_to_messages


def evaluation_prompts(n: int, per_task: int, max_chars: int) -> list[list[dict[str, str]]]:
    """n classification prompts in evaluate's order: task by task, `per_task` items of each shipped task."""
    from evals.data import load_task
    from evals.tasks import DEFAULT_DATA_DIR, load_registry
    from graphs.evaluate import render_classification

    prompts: list[list[dict[str, str]]] = []
    for task in load_registry():
        loaded = load_task(task, [DEFAULT_DATA_DIR], max_chars=max_chars)
        if loaded is not None:
            prompts.extend(render_classification(task, item.text) for item in loaded.items[:per_task])
        if len(prompts) >= n:
            return prompts[:n]
    raise SystemExit(f"the shipped tasks under data/downstream hold only {len(prompts)} items; ask for fewer")


async def one_at_a_time(chat, prompts, max_tokens: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    answers = [(await chat.ainvoke(convert_to_messages(p), max_tokens=max_tokens)).text for p in prompts]
    return time.perf_counter() - started, answers


async def all_in_flight(chat, prompts, max_tokens: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    replies = await asyncio.gather(
        *(chat.ainvoke(convert_to_messages(p), max_tokens=max_tokens) for p in prompts)
    )
    return time.perf_counter() - started, [r.text for r in replies]


async def through_factory(spec: str, prompts, max_tokens: int, concurrency: int) -> tuple[float, list[int]]:
    from agents.providers.factory import ModelServices, create_chat_model
    from agents.providers.resilience import CallLimits

    model = create_chat_model(spec, services=ModelServices(limits=CallLimits(concurrency=concurrency)))
    await model.chat.aload()
    await model.generate(prompts[0], step="warm-up", max_tokens=max_tokens)
    model.chat.batch_sizes.clear()
    started = time.perf_counter()
    await asyncio.gather(*(model.generate(p, step="bench", max_tokens=max_tokens) for p in prompts))
    return time.perf_counter() - started, list(model.chat.batch_sizes)


async def bench(args: argparse.Namespace) -> None:
    import torch

    from agents.providers.hf_chat import HFChat, resolve_hf_model

    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = evaluation_prompts(args.items, args.per_task, args.max_chars)
    plan = resolve_hf_model(args.spec.removeprefix("hf:"))
    single_chat = HFChat.from_plan(plan, max_batch=1)
    batch_chat = HFChat.from_plan(plan, max_batch=args.batch)
    await batch_chat.aload()
    # Warm-up: first calls pay for allocator growth and lazy kernel choices.
    await all_in_flight(batch_chat, prompts[: args.batch], args.max_tokens)
    await one_at_a_time(single_chat, prompts[:2], args.max_tokens)
    print(
        f"{args.spec} on {'cuda' if torch.cuda.is_available() else 'cpu'} ({torch.get_num_threads()} torch "
        f"threads, {os.cpu_count()} cores): {len(prompts)} prompts, max_tokens {args.max_tokens}, batch {args.batch}"
    )
    singles, batched, factory = [], [], []
    for _ in range(args.repeat):
        seconds, single_answers = await one_at_a_time(single_chat, prompts, args.max_tokens)
        singles.append(len(prompts) / seconds)
        batch_chat.batch_sizes.clear()
        seconds, batch_answers = await all_in_flight(batch_chat, prompts, args.max_tokens)
        batched.append(len(prompts) / seconds)
        sizes = list(batch_chat.batch_sizes)
        seconds, factory_sizes = await through_factory(args.spec, prompts, args.max_tokens, args.batch)
        factory.append(len(prompts) / seconds)
    same = sum(a == b for a, b in zip(single_answers, batch_answers, strict=True))
    single, batch, via = (statistics.median(x) for x in (singles, batched, factory))
    print(f"one at a time:       {single:7.2f} items/s  (runs: {', '.join(f'{x:.2f}' for x in singles)})")
    print(
        f"batched (HFChat):    {batch:7.2f} items/s  (runs: {', '.join(f'{x:.2f}' for x in batched)}); batches {sizes}"
    )
    print(
        f"batched (factory):   {via:7.2f} items/s  (runs: {', '.join(f'{x:.2f}' for x in factory)}); batches {factory_sizes}"
    )
    print(f"ratio batched / one at a time: {batch / single:.2f}x (HFChat), {via / single:.2f}x (factory)")
    print(f"batched answers equal to one-at-a-time answers: {same}/{len(prompts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="hf:local", help="The hf: model spec to measure.")
    parser.add_argument("--items", type=int, default=32, help="Prompts to answer.")
    parser.add_argument(
        "--per-task",
        type=int,
        default=16,
        help="Items per task, tasks one after another as evaluate runs them.",
    )
    parser.add_argument("--max-tokens", type=int, default=8, help="Tokens each answer may take.")
    parser.add_argument(
        "--batch", type=int, default=16, help="max_batch of the batched model (and its concurrency)."
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    parser.add_argument("--max-chars", type=int, default=2000, help="Item texts are cut to this length.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each mode; medians are printed.")
    args = parser.parse_args()
    from trainers.local_model import hub_off_by_default

    hub_off_by_default()
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
