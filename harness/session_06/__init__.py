"""Session 06 — retrieval evaluation and FAISS: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=6,
    slug="retrieval_eval",
    title="Retrieval evaluation and FAISS: Recall@K, seen-item exclusion, exact and IVF indexes, ANN recall",
    exercises=(
        Exercise(
            "recall_at_k",
            summary="per-user Recall@K: relevant items found in the top k over the number of relevant items",
            hint="top = topk[:, :k]; real = relevant != 0; found = ((top[:, :, None] == relevant[:, None, :]) & "
                 "real[:, None, :]).any(dim=1) gives (B, R): which relevant items were found. Divide "
                 "found.sum(1) by real.sum(1), as floats: the number of relevant items, never k, and never "
                 "counting padding (a 0 in the list must not match a 0 in the relevant row). 0/0 is NaN."),
        Exercise(
            "mask_seen",
            summary="set each user's seen items and the padding column of a score matrix to -inf, vectorised",
            hint="out = scores.clone(); out.scatter_(1, seen, -math.inf) writes -inf at (b, seen[b, j]) for each "
                 "row b; then out[:, 0] = -math.inf. Not scores[:, seen.flatten()]: that masks every user's "
                 "history for everyone. Work on a copy; the caller's scores stay as they were."),
        Exercise(
            "maybe_to_gpu",
            summary="copy a FAISS index to GPU 0 when asked, or when FAISS sees a GPU; otherwise return it as is",
            hint="if use_gpu is None: use_gpu = faiss_gpu_available(). If not use_gpu: return index (the same "
                 "object). Otherwise return faiss.index_cpu_to_gpu(gpu_resources(), 0, index). Never call GPU "
                 "functions unconditionally: faiss-cpu does not even define faiss.StandardGpuResources."),
        Exercise(
            "build_flat_index",
            summary="exact inner-product FAISS index over items 1..n_items (label r = item r + 1)",
            hint="vectors = faiss_array(item_emb[1:]) (float32, C-contiguous, detached, on the CPU; row 0 is "
                 "padding and is never indexed); index = faiss.IndexFlatIP(d); index.add(vectors); return "
                 "maybe_to_gpu(index, use_gpu). IndexFlatL2 ranks by distance, which differs from the inner "
                 "product as soon as vectors are not normalised."),
        Exercise(
            "build_ivf_index",
            summary="IVF index with inner product: k-means coarse quantiser with nlist lists, nprobe probed",
            hint="vectors = faiss_array(item_emb[1:]); quantizer = faiss.IndexFlatIP(d); index = "
                 "faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT) (the default metric is "
                 "L2); index.train(vectors); index.add(vectors); index = maybe_to_gpu(index, use_gpu); "
                 "index.nprobe = nprobe (the default is 1); return index."),
        Exercise(
            "search_excluding_seen",
            summary="top-k item ids from an index, never a seen item: over-fetch k + max seen, drop, keep k, pad",
            hint="S = (seen != 0).sum(1).max(); _, labels = index.search(faiss_array(queries), k + S); ids = "
                 "labels + 1 (label r is item r + 1; -1 becomes 0). Membership: sort each row of "
                 "cat([zeros(B, 1), seen], 1), where = torch.searchsorted(sorted_seen, ids).clamp_max(width - 1), "
                 "drop = sorted_seen.gather(1, where) == ids. Then order = argsort(drop.int8, dim=1, stable=True), "
                 "torch.where(drop, 0, ids).gather(1, order)[:, :k]."),
        Exercise(
            "ann_recall",
            summary="share of the exact top-k that the approximate search also returns, averaged over queries",
            hint="It is Recall@K with the exact list as the relevant set: "
                 "float(torch.nanmean(recall_at_k(approx, exact, k=exact.shape[1]))). Membership, not position: "
                 "(approx == exact) compares rank by rank and punishes a mere reordering."),
    ),
)
