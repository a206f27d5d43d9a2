"""A job's event story (service/jobs.py JobEvents): what a late reader is given and what a live one sees."""

from __future__ import annotations

import asyncio

from service.jobs import JobEvents


def test_a_late_reader_gets_the_status_changes_and_only_the_latest_progress_between_them():
    events = JobEvents()
    events.publish("status", {"status": "queued"})
    events.publish("status", {"status": "running"})
    events.total = 3
    for _ in range(3):
        events.item_done(object())
    events.publish("end", {"status": "completed", "error": None})

    story = [(event, data) for _, event, data in events.after(-1)]
    assert story == [
        ("status", {"status": "queued"}),
        ("status", {"status": "running"}),
        ("progress", {"done": 3, "failed": 0, "total": 3}),
        ("end", {"status": "completed", "error": None}),
    ]
    numbers = [number for number, _, _ in events.after(-1)]
    assert numbers == sorted(numbers) and numbers[-1] == events.last == 5
    assert [event for _, event, _ in events.after(numbers[1])] == ["progress", "end"]  # Last-Event-ID


async def test_a_reader_that_keeps_up_sees_every_progress_event():
    events = JobEvents()
    events.total = 4
    seen_progress: list[int] = []

    async def read() -> None:
        seen = -1
        while True:
            await events.wait_beyond(seen)
            for number, event, data in events.after(seen):
                seen = number
                if event == "end":
                    return
                seen_progress.append(data["done"])

    reader = asyncio.create_task(read())
    for _ in range(4):
        await asyncio.sleep(0)
        events.item_done(type("Outcome", (), {"failure": None})())
        await asyncio.sleep(0)
    events.publish("end", {"status": "completed", "error": None})
    await asyncio.wait_for(reader, 5)
    assert seen_progress == [1, 2, 3, 4]
