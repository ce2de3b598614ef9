"""The serving track: the model bundle, then real servers under a short load (sessions 14-15).

Stages:

* ``serving-bundle`` writes ``runs/bundles/<dataset>-<preset>/`` (``-sessions`` appended for
  ``--impl sessions``) from what earlier stages left in the context: the retriever the ranking
  track reranks (else the best two-tower model by validation NDCG@10), its FAISS index, the DLRM
  the ``dlrm`` stage trained (with its feature builder), titles, popularity, session 11's text
  vectors for the cold items when there are any, and the manifest. Without a trained ranker (the
  ``dlrm`` stage did not run, or its exercises are not written) the bundle's ranker keeps the
  retriever's own order (:class:`~harness.serving.bundle.RetrievalOrder`), and the stage says so.
  An unchanged bundle (same models, features, data and code) is not written again.
* ``serving`` starts the server twice on loopback, one request at a time and micro-batched (when
  session 15 is written), sends each a short closed-loop Locust load at a few concurrency levels
  (``harness/configs/serving.yaml``), and prints p50 / p95 / p99 latency, QPS and errors. When
  nothing changed since the last run (bundle, code, settings), it prints the measured table again
  and only checks that the server still starts and answers (``--retrain`` measures again).

``ensure_bundle(dataset, preset)`` gives the notebooks a bundle, running the stages it needs.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..paths import display_path
from .cache import content_digest
from .runner import Stage, StageSkipped


def _retriever(ctx):
    """(name, model, max_len) of the retriever to serve, and the ranking data when the ranking track ran."""
    from ..config import load_config

    data = ctx.artifacts.get("ranking_data")
    if data is not None:
        return data.view.name, data.view.model, int(data.view.max_len), data
    retrievers = ctx.artifacts.get("retrievers") or {}
    if not retrievers:
        raise StageSkipped("no trained retriever in this run: the bundle serves one (run the two-tower stages too, "
                           "e.g. --stages two-tower-transformer dlrm serving-bundle serving)")
    valid = ctx.artifacts.get("retriever_valid", {})
    best = max(retrievers, key=lambda name: valid.get(name, {}).get("NDCG@10", -1.0))
    return best, retrievers[best], int(load_config("two_tower", preset=ctx.preset).train.max_len), None


def _ranker(ctx, data):
    """(ranker, its feature builder fit before valid, info) from the ranking track, or the stand-in."""
    from ..config import load_config
    from .features import FeatureBuilder

    cfg = load_config("dlrm", preset=ctx.preset)
    build = {"dim": int(cfg.model.dim), "bottom": list(cfg.model.bottom), "top": list(cfg.model.top)}
    ranker = ctx.artifacts.get("ranker")
    if ranker is not None and data is not None:
        from .ranking import pipeline_variants

        for variant in pipeline_variants():
            builder = data.builder_for(variant, "valid")
            if getattr(ranker, "spec", None) == builder.spec:
                names = [n for n, m in (ctx.artifacts.get("rankers") or {}).items() if m is ranker]
                return ranker, builder, {"name": names[0] if names else f"DLRM ({variant.name})", "build": build,
                                         "note": f"trained by the dlrm stage (sessions 07-10): {variant.describe(cfg)}"}
        print("   the dlrm stage's ranker does not match any of its variants' features; serving without it")
    f = cfg.features
    builder = FeatureBuilder.fit(ctx.dataset, "valid", history_len=f.history_len, min_count=f.min_count,
                                 max_vocab=f.max_vocab).with_extra_dense({"retrieval_score": np.array([0.0, 1.0])})
    from ..serving.bundle import RetrievalOrder

    print("   no trained ranker in this run (the dlrm stage did not run): the bundle's ranker keeps the retriever's "
          "order (RetrievalOrder); run the dlrm stage before serving-bundle for DLRM reranking")
    return RetrievalOrder(builder.spec), builder, {"name": "retriever order (no DLRM trained)", "build": {},
                                                   "note": "the dlrm stage did not run in this pipeline"}


def _text_vectors(ctx, cold: np.ndarray):
    """Session 11's text vectors when there are cold items to serve and session 11 is written; else None."""
    if not cold[1:].any():
        return None, "no cold items (every item has interactions): no text path needed"
    try:
        from .coldstart import item_text_vectors
    except ImportError as err:
        return None, f"no text path: {err}"
    from ..autograder.stubs import unwritten_exercises

    missing = unwritten_exercises(11, ctx.impl)
    if missing:
        return None, f"no text path: session 11's `{missing[0][0]}` is not written yet"
    try:
        vectors = item_text_vectors(ctx.dataset, progress=False, log=lambda line: print(line))
    except Exception as err:  # the text path is an extra: a bundle without it still serves
        return None, f"no text path: session 11's item_text_vectors failed ({type(err).__name__}: {err})"
    return vectors, "session 11 item text vectors"


def _stage_bundle(ctx) -> None:
    from ..autograder.loader import notebook_path
    from ..config import as_dict, load_config
    from ..serving.bundle import bundle_dir, read_manifest, write_bundle
    from .cache import code_fingerprint

    start = time.perf_counter()
    name, retriever, max_len, data = _retriever(ctx)
    ranker, builder, ranker_info = _ranker(ctx, data)
    tcfg = load_config("two_tower", preset=ctx.preset)
    build = {"tower": "transformer" if "transformer" in name else "mean", "dim": int(tcfg.model.dim),
             "category_dim": int(tcfg.model.category_dim), "dropout": float(tcfg.model.dropout),
             "layers": int(tcfg.model.layers), "heads": int(tcfg.model.heads)}
    scfg = load_config("serving", preset=ctx.preset)
    serving = as_dict(scfg.serving)
    cold = ctx.dataset.item_counts("test") == 0
    cold[0] = False
    path = bundle_dir(ctx.dataset_name, ctx.preset, ctx.impl)
    code = code_fingerprint(ctx.impl, (2, 3, 6, 7), modules=("harness.serving.bundle", "harness.pipeline.features",
                                                             __name__))
    key = content_digest(ctx.dataset.meta.get("fingerprint"), code, serving, name, build, ranker_info, retriever, ranker,
                  builder.spec.to_dict(), int(cold.sum()))
    existing = None
    try:
        existing = read_manifest(path) if (path / "manifest.json").is_file() else None
    except Exception:
        existing = None
    if existing and existing.get("key") == key and not ctx.retrain:
        print(f"   bundle unchanged ({display_path(path)}, id {existing['bundle_id']}): models, features, data and "
              "code are the same as when it was written")
    else:
        text, text_note = _text_vectors(ctx, cold)
        write_bundle(path, dataset=ctx.dataset, retriever=retriever,
                     retriever_info={"name": name, "max_len": max_len, "build": build}, ranker=ranker,
                     ranker_info=ranker_info, features=builder, text_vectors=text, text_source=text_note if text is not None else None,
                     cold=cold, serving=serving, impl=ctx.impl, preset=ctx.preset, key=key,
                     notes=[text_note, f"written by the serving-bundle stage from {notebook_path(3, ctx.impl).parent.name}/"])
        existing = read_manifest(path)
        print(f"   wrote {display_path(path)} (id {existing['bundle_id']}) in {time.perf_counter() - start:.1f} s: "
              f"retriever `{name}`, ranker `{ranker_info['name']}`, {int(cold.sum())} cold items; {text_note}")
    ctx.artifacts["bundle"] = path


def _load_settings(ctx):
    from ..config import load_config

    return load_config("serving", preset=ctx.preset)


def _stage_serving(ctx) -> None:
    from ..autograder.stubs import unwritten_exercises
    from ..config import as_dict
    from ..serving.bundle import load_bundle, read_manifest
    from ..serving.loadtest import run_locust, write_request_corpus
    from ..serving.server import ServerProcess, start_all, stop_all
    from .cache import code_fingerprint

    path = ctx.artifacts.get("bundle")
    if path is None:
        raise StageSkipped("no bundle in this run: the serving-bundle stage writes it (run it too)")
    cfg = _load_settings(ctx)
    batched = not unwritten_exercises(15, ctx.impl)
    manifest = read_manifest(path)
    from ..serving.loadtest import LOCUSTFILE

    # (the locustfile is hashed as a file, never imported: importing locust monkey-patches this process)
    key = content_digest(manifest["bundle_id"], code_fingerprint(ctx.impl, (14, 15) if batched else (14,),
                                                          modules=("harness.serving.app", "harness.serving.glue",
                                                                   __name__)),
                  LOCUSTFILE.read_text(), as_dict(cfg), batched)
    record = ctx.cache_dir / "serving-load.json"
    modes = [("unbatched", False)] + ([("batched", True)] if batched else [])
    if not batched:
        print("   session 15 (micro-batching) is not written yet: measuring unbatched serving only")
    if record.is_file() and not ctx.retrain:
        saved = json.loads(record.read_text())
        if saved.get("key") == key:
            with ServerProcess(path, impl=ctx.impl, batching=batched, max_batch=cfg.batching.max_batch,
                               max_wait_ms=cfg.batching.max_wait_ms, threads=cfg.load.threads) as server:
                import httpx

                with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as client:
                    statuses = [client.post("/recommend", json=body).status_code
                                for body in ({"user_id": 1, "k": 10}, {"history": [1, 2, 3], "k": 10}, {"k": 10})]
            if statuses != [200, 200, 200] or not server.clean_exit:
                print(f"   the server answered {statuses} (clean shutdown: {server.clean_exit}): measuring again")
            else:
                print(f"   nothing changed since the last measurement ({saved['measured_at']}); the server still starts, "
                      "answers and stops cleanly. Last measured (--retrain measures again):\n")
                _print_table(saved["rows"])
                ctx.artifacts["serving_load"] = saved
                return
    # exact percentiles from every measured request (session 15's summarize_latencies), else Locust's CSV
    summarize = ctx.session(15).summarize_latencies if batched else None
    bundle = load_bundle(path)  # for the request corpus (user ids and histories)
    out = ctx.cache_dir / "serving-load"
    corpus = write_request_corpus(bundle, out / "requests.json", n=int(cfg.load.requests), k=int(cfg.load.k),
                                  history_share=float(cfg.load.history_share))
    servers = {name: ServerProcess(path, impl=ctx.impl, batching=on, max_batch=cfg.batching.max_batch,
                                   max_wait_ms=cfg.batching.max_wait_ms, threads=cfg.load.threads)
               for name, on in modes}
    rows, results = [], []
    try:
        start_all(servers.values())
        for users in cfg.load.users:
            for name, _ in modes:  # alternate the modes at each level, so a slow spell hits both
                r = run_locust(servers[name].url, corpus, users=int(users), seconds=float(cfg.load.seconds),
                               out_dir=out / f"{name}-u{users}", label=name)
                results.append(r)
                row = _row(name, r, summarize)
                rows.append(row)
                print(f"   {name:>9}, {users:>3} users: {row['requests']:>6,} requests, {row['failures']} failures, "
                      f"{row['QPS']:7,.0f} QPS, p50 {row['p50 ms']:6.2f} ms, p95 {row['p95 ms']:6.2f} ms, "
                      f"p99 {row['p99 ms']:6.2f} ms")
    finally:
        stop_all(servers.values())
    unclean = [n for n, s in servers.items() if not s.clean_exit]
    if unclean:
        print(f"   warning: the {', '.join(unclean)} server did not shut down cleanly")
    print()
    _print_table(rows)
    speedups = _speedups(rows)
    for users, ratio in speedups.items():
        print(f"   micro-batching at {users} users: {ratio:.2f}x the unbatched QPS")
    saved = {"key": key, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": rows, "speedups": speedups,
             "bundle": str(path), "clean_shutdown": not unclean}
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(saved, indent=2, default=str))
    ctx.artifacts["serving_load"] = saved


def _row(mode: str, r, summarize) -> dict:
    """One line of the table: exact numbers when ``summarize`` (session 15's) is given, else Locust's (rounded)."""
    lat = r.latencies
    row = {"mode": mode, "users": r.users, "requests": r.requests, "failures": r.failures, "QPS": r.qps,
           "p50 ms": r.p50, "p95 ms": r.p95, "p99 ms": r.p99, "source": "Locust CSV"}
    if summarize is not None and len(lat):
        m = summarize(lat["latency_ms"].to_numpy(), (lat["ok"] == 1).to_numpy(), r.window)
        row.update({"requests": m["requests"], "failures": m["errors"], "QPS": m["qps"], "p50 ms": m["p50"],
                    "p95 ms": m["p95"], "p99 ms": m["p99"], "source": "every request"})
    row["app ms (median)"] = float(lat["app_ms"].median()) if len(lat) and lat["app_ms"].notna().any() else None
    row["model ms (median)"] = float(lat["model_ms"].median()) if len(lat) and lat["model_ms"].notna().any() else None
    row["batch (mean)"] = float(lat["batch"].mean()) if len(lat) and lat["batch"].notna().any() else None
    return row


def _speedups(rows: list[dict]) -> dict:
    by = {(r["mode"], r["users"]): r["QPS"] for r in rows}
    return {u: by[("batched", u)] / by[("unbatched", u)] for (m, u) in by
            if m == "batched" and by.get(("unbatched", u))}


def _print_table(rows: list[dict]) -> None:
    print(f"   {'mode':<10}{'users':>6}{'requests':>10}{'errors':>8}{'QPS':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'batch':>7}")
    for r in rows:
        batch = f"{r['batch (mean)']:.1f}" if r.get("batch (mean)") else ""
        print(f"   {r['mode']:<10}{r['users']:>6}{r['requests']:>10,}{r['failures']:>8}{r['QPS']:>8,.0f}"
              f"{r['p50 ms']:>9.2f}{r['p95 ms']:>9.2f}{r['p99 ms']:>9.2f}{batch:>7}")


def ensure_bundle(dataset: str, preset: str, impl: str = "solutions", log: bool = True) -> Path:
    """A bundle to serve for ``dataset``/``preset``: the one the pipeline last wrote, else a new one.

    An existing bundle is used when it fits the dataset as prepared now (same fingerprint) and this
    process's library versions. Otherwise the pipeline's stages write it: the Transformer retriever,
    the ``dlrm`` ranker (when its track can run) and ``serving-bundle``, with trained models from the
    pipeline's cache when nothing changed. On the synthetic smoke preset (CI) a missing bundle is
    replaced by the test bundle (seeded random weights, built in seconds): smoke runs check the code,
    not the models. Several processes asking at once build it once (a file lock).
    """
    import contextlib
    import fcntl
    import io
    import os

    from ..data import DATASETS, load_dataset
    from ..paths import runs_dir
    from ..serving.bundle import BundleError, bundle_dir, check_manifest, read_manifest
    from .runner import all_stages, missing_exercises, run_pipeline

    path = bundle_dir(dataset, preset, impl)
    path.parent.mkdir(parents=True, exist_ok=True)

    def usable(candidate: Path) -> bool:
        try:
            manifest = read_manifest(candidate)
            presets = DATASETS[dataset].presets if dataset in DATASETS else ()  # as the pipeline's data stage
            fingerprint = load_dataset(dataset, preset if preset in presets else None).meta.get("fingerprint")
            check_manifest(manifest, candidate, expect_fingerprint=fingerprint)
            return True
        except (BundleError, FileNotFoundError, ValueError, KeyError):
            return False

    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if usable(path):
            return path
        if dataset == "synthetic" and preset == "smoke":
            from ..serving.testing import tiny_bundle

            if log:
                print("smoke preset: serving the test bundle (seeded random weights); `python -m harness pipeline "
                      "--dataset synthetic --preset smoke` writes one with trained models")
            return tiny_bundle()

        def runnable(stage) -> bool:
            try:
                return not missing_exercises(stage, impl)
            except Exception:  # a track whose sessions are not there yet
                return False

        by_name = {s.name: s for s in all_stages()}
        stages = [n for n in ("two-tower-transformer", "dlrm", "serving-bundle") if n in by_name and runnable(by_name[n])]
        saved = os.environ.get("HARNESS_UPSTREAM")
        sink = contextlib.nullcontext() if log else contextlib.redirect_stdout(io.StringIO())
        try:
            with sink:
                # its metrics table goes aside: the last full pipeline run's table stays where it is
                run_pipeline(dataset=dataset, impl=impl, preset=preset, stages=stages,
                             output=str(runs_dir() / "bundles" / f".stages-{dataset}-{preset}-{impl}"))
        finally:
            if saved is None:
                os.environ.pop("HARNESS_UPSTREAM", None)
            else:
                os.environ["HARNESS_UPSTREAM"] = saved
        if not (path / "manifest.json").is_file():
            raise RuntimeError(f"the pipeline wrote no bundle at {display_path(path)}; run `python -m harness pipeline "
                               f"--dataset {dataset} --preset {preset} --stages {' '.join(stages)}` to see why")
        return path


_BUNDLE_NEEDS = {2: ("collate_sequences",), 3: (), 6: ("build_flat_index", "search_excluding_seen"), 7: ()}

STAGES = [
    Stage("serving-bundle", _stage_bundle, "the model bundle: retriever, FAISS index, DLRM, features (session 14)",
          needs=_BUNDLE_NEEDS),
    Stage("serving", _stage_serving, "real servers on loopback under short Locust loads, unbatched vs micro-batched "
                                     "(sessions 14-15)", needs={14: ()}),
]
