"""Session 13 — torch.compile: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=13,
    slug="compile",
    title="torch.compile: honest timing, graph breaks, a model fixed to compile as one graph, recompiles and buckets",
    exercises=(
        Exercise(
            "benchmark",
            summary="time a call honestly: untimed warm-up, device synchronisation, one sample per call, median and IQR",
            hint="for _ in range(warmup): fn(). Then synchronize(device) once, so the warm-up's queued work is not "
                 "billed to the first sample. For each of the repeats: start = time.perf_counter(); fn(); "
                 "synchronize(device); times.append((time.perf_counter() - start) * 1000). Summarise with "
                 "np.percentile(times, [25, 50, 75]): the median, and the IQR = p75 - p25 (not the mean, not the "
                 "standard deviation). Return plain floats, in milliseconds."),
        Exercise(
            "graph_break_report",
            summary="graphs, ops and break reasons from torch._dynamo.explain, and the verdict of fullgraph=True",
            hint="out = torch._dynamo.explain(fn)(*args, **kwargs); graphs = out.graph_count, ops = out.op_count, "
                 "one reason per entry of out.break_reasons: f\"{Path(r.user_stack[-1].filename).name}:"
                 "{r.user_stack[-1].lineno}: {r.reason.splitlines()[0]}\". Then torch._dynamo.reset() and try "
                 "torch.compile(fn, backend=\"eager\", fullgraph=True)(*args, **kwargs) in a try/except: "
                 "explain misses some breaks (a print, a break inside a loop), fullgraph=True raises at the first. "
                 "torch._dynamo.reset() at the end."),
        Exercise(
            "FixedScorer",
            summary="BrokenScorer's forward in batched tensor operations: no trimming, no .item(), no NumPy, no lists",
            hint="positions = torch.arange(L - 1, -1, -1, device=history.device) (distance from the most recent item, "
                 "all L columns); pooled = (h * m).sum(1) / lengths.clamp_min(1), m = mask[..., None]; buckets = "
                 "torch.bucketize(lengths, self.length_edges, right=True) (np.digitize's rule: edge[i-1] <= x < "
                 "edge[i]); user = user + self.mlp(user); clip: user * (max_norm / norm.clamp_min(1e-12)).clamp(max=1)"
                 "; scores = (self.item_embedding(candidates) * user[:, None, :]).sum(-1)."),
        Exercise(
            "count_compiles",
            summary="graphs compiled while torch.compile(fn, dynamic=...) runs over a stream of batches",
            hint="torch._dynamo.reset() first (earlier compiled code would be reused and counted as nothing); a "
                 "backend is a callable backend(gm, example_inputs) returning gm.forward: increment a counter in it "
                 "(once per graph compiled, not once per call). compiled = torch.compile(fn, backend=counting, "
                 "dynamic=dynamic); call it on every batch; torch._dynamo.reset() at the end (try/finally)."),
        Exercise(
            "pad_to_bucket",
            summary="zero-pad dim 0 of a batch's tensors to the smallest bucket that holds it; return them and n",
            hint="n = t.shape[0] (the same for every tensor, else ValueError); size = min(b for b in buckets if "
                 "b >= n) (buckets in any order; none fits: ValueError saying to split the batch or add a bucket); "
                 "out = torch.zeros((size, *t.shape[1:]), dtype=t.dtype, device=t.device); out[:n] = t. New "
                 "tensors: never pad the caller's in place, never truncate."),
    ),
)
