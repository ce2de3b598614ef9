"""Session 15 — serving II: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=15,
    slug="serving_load",
    title="Serving II: dynamic micro-batching, load tests (p50/p95/p99, QPS, errors), fuzzing",
    exercises=(
        Exercise(
            "collect_batch",
            summary="one batch from an asyncio.Queue: the first item, then more until max_batch or max_wait_ms",
            hint="loop = asyncio.get_running_loop(); batch = [await queue.get()]; deadline = loop.time() + "
                 "max_wait_ms / 1000 (fixed once); while len(batch) < max_batch: try queue.get_nowait() (continue on "
                 "success, except asyncio.QueueEmpty); remaining = deadline - loop.time(); break if <= 0; else "
                 "batch.append(await asyncio.wait_for(queue.get(), remaining)), breaking on TimeoutError."),
        Exercise(
            "MicroBatcher",
            summary="submit: a future per request; process: one fn call in a thread, failures isolated per request",
            hint="submit: future = asyncio.get_running_loop().create_future(); await self.queue.put((item, future)); "
                 "return await future. process: items = [i for i, _ in batch]; results = await asyncio.to_thread("
                 "self.fn, items) (never self.fn(items) on the loop); if it raises, call fn([item]) for each item alone "
                 "and keep each outcome; then for each (future, outcome): skip future.done() (cancelled), else "
                 "set_result or set_exception."),
        Exercise(
            "rank_batch",
            summary="rank_candidates once for many requests (k = max of their k), each request its own row and k",
            hint="ids, scores = rank_candidates(bundle, [q.user_id for q in queries], [q.history for q in queries], "
                 "max(ks)); return [(ids[b, :k], scores[b, :k]) for b, k in enumerate(ks)]. One call: a loop calling "
                 "rank_candidates per query is no batching at all."),
        Exercise(
            "summarize_latencies",
            summary="p50/p95/p99 by nearest rank over successful requests, QPS = successes per second, errors",
            hint="good = np.sort(lat[ok]); n = len(good); p-th percentile = good[max(1, math.ceil(p * n / 100)) - 1] "
                 "(NaN when n == 0); qps = n / duration_s; errors = (~ok).sum(); error_rate = errors / len(lat) (0 "
                 "for none); mean and max of good. Not np.percentile's default (it interpolates); not over failures."),
    ),
)
