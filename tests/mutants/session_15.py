from . import Mutant

MUTANTS = [
    # collect_batch
    Mutant("collect_batch", "deadline restarted at every arrival (a trickle holds the batch forever)",
           "            batch.append(await asyncio.wait_for(queue.get(), remaining))\n",
           "            batch.append(await asyncio.wait_for(queue.get(), remaining))\n"
           "            deadline = loop.time() + max_wait_ms / 1000.0\n"),
    Mutant("collect_batch", "milliseconds taken as seconds", "    deadline = loop.time() + max_wait_ms / 1000.0\n",
           "    deadline = loop.time() + max_wait_ms\n"),
    Mutant("collect_batch", "waits for a full batch, however long it takes",
           "            batch.append(await asyncio.wait_for(queue.get(), remaining))\n",
           "            batch.append(await queue.get())\n"),
    Mutant("collect_batch", "items already waiting left behind once the deadline passed",
           "        try:\n            batch.append(queue.get_nowait())\n            continue\n"
           "        except asyncio.QueueEmpty:\n            pass\n", ""),
    Mutant("collect_batch", "an empty batch when nothing is queued (a busy loop)",
           "    batch = [await queue.get()]\n",
           "    if queue.empty():\n        return []\n    batch = [queue.get_nowait()]\n"),
    Mutant("collect_batch", "one item more than max_batch", "    while len(batch) < max_batch:\n",
           "    while len(batch) <= max_batch:\n"),
    Mutant("collect_batch", "items returned newest first", "            break\n    return batch\n",
           "            break\n    return batch[::-1]\n"),
    # MicroBatcher
    Mutant("MicroBatcher", "the model called on the event loop",
           "            results = await asyncio.to_thread(self.fn, items)\n", "            results = self.fn(items)\n"),
    Mutant("MicroBatcher", "one call per item: no batching at all",
           "            results = await asyncio.to_thread(self.fn, items)\n",
           "            results = [(await asyncio.to_thread(self.fn, [item]))[0] for item in items]\n"),
    Mutant("MicroBatcher", "one failing request fails the whole batch",
           "        except Exception:\n            outcomes = []\n",
           "        except Exception as err:\n            outcomes = [(False, err) for _ in items]\n            items = []\n"),
    Mutant("MicroBatcher", "a failed batch leaves its requests unanswered",
           "            for item in items:  # isolate the failure", "            for item in []:  # isolate the failure"),
    Mutant("MicroBatcher", "cancelled futures not skipped",
           "            if future.done():  # cancelled: the client went away\n                continue\n", ""),
    Mutant("MicroBatcher", "rows given to the wrong requests", "zip(batch, outcomes)", "zip(batch, outcomes[::-1])"),
    Mutant("MicroBatcher", "submit returns the future instead of its result", "        return await future\n",
           "        return future\n"),
    # rank_batch
    Mutant("rank_batch", "one rank_candidates call per request",
           "    ids, scores = rank_candidates(bundle, [q.user_id for q in queries], [q.history for q in queries], max(ks))\n"
           "    return [(ids[b, :k], scores[b, :k]) for b, k in enumerate(ks)]\n",
           "    out = []\n    for q, k in zip(queries, ks):\n"
           "        ids, scores = rank_candidates(bundle, [q.user_id], [q.history], k)\n"
           "        out.append((ids[0], scores[0]))\n    return out\n"),
    Mutant("rank_batch", "the first request's k for everybody", "[q.history for q in queries], max(ks))",
           "[q.history for q in queries], ks[0])"),
    Mutant("rank_batch", "rows not cut to their own k", "    return [(ids[b, :k], scores[b, :k]) for b, k in enumerate(ks)]\n",
           "    return [(ids[b], scores[b]) for b, k in enumerate(ks)]\n"),
    Mutant("rank_batch", "rows mixed between requests", "    return [(ids[b, :k], scores[b, :k]) for b, k in enumerate(ks)]\n",
           "    return [(ids[len(ks) - 1 - b, :k], scores[len(ks) - 1 - b, :k]) for b, k in enumerate(ks)]\n"),
    # summarize_latencies
    Mutant("summarize_latencies", "interpolated percentiles (numpy's default)",
           "        return float(good[max(1, math.ceil(p * n / 100)) - 1]) if n else math.nan\n",
           "        return float(np.percentile(good, p)) if n else math.nan\n"),
    Mutant("summarize_latencies", "failed requests timed too", "    good = np.sort(lat[ok])\n", "    good = np.sort(lat)\n"),
    Mutant("summarize_latencies", "QPS counts failures", '"qps": n / duration_s', '"qps": len(lat) / duration_s'),
    Mutant("summarize_latencies", "rank off by one", "float(good[max(1, math.ceil(p * n / 100)) - 1])",
           "float(good[min(n - 1, math.ceil(p * n / 100))])"),
    Mutant("summarize_latencies", "sorts the caller's array in place", "    good = np.sort(lat[ok])\n",
           "    lat.sort()\n    good = lat[ok]\n"),
    Mutant("summarize_latencies", "crashes when nothing succeeded",
           "        return float(good[max(1, math.ceil(p * n / 100)) - 1]) if n else math.nan\n",
           "        return float(good[max(1, math.ceil(p * n / 100)) - 1])\n"),
]
