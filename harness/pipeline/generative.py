"""The generative track: session 16's decoder over semantic IDs, against two-tower + FAISS on the same split.

Two code sets, built with session 12's ``build_semantic_ids`` under the same settings
(``harness/configs/semantic_ids.yaml``): one from the items' text (session 11's vectors, as in
session 12) and one from the trained two-tower Transformer's item embeddings (collaborative
vectors), the two choices the literature compares.

    sets = code_sets(ds, "laptop", retriever=model)      # {"collaborative": SemanticIDs, "text": SemanticIDs}

Stage ``generative`` trains one decoder per code set through session 05's ``fit`` (cached by
:func:`~harness.pipeline.cache.load_or_train`), retrieves by trie-constrained beam search with seen
items excluded, and adds two rows to the metrics table: ``generative`` for the better code set on
the valid split, ``generative (<other> codes)`` for the other.
"""
from __future__ import annotations

import time

import torch

from .cache import content_digest
from .runner import Stage

TEXT, COLLABORATIVE = "text", "collaborative"
RETRIEVER = "two-tower transformer"  # whose item tower gives the collaborative vectors


@torch.no_grad()
def collaborative_vectors(retriever: torch.nn.Module) -> torch.Tensor:
    """float32 (n_items + 1, d): a two-tower model's L2-normalised item embeddings, row 0 (padding) zeros."""
    was_training = retriever.training
    retriever.eval()
    try:
        device = next(retriever.parameters()).device
        vectors = retriever.item_tower(torch.arange(retriever.n_items + 1, device=device)).float().cpu()
    finally:
        retriever.train(was_training)
    vectors[0] = 0.0
    return vectors


def semantic_id_settings(preset: str | None = None):
    """Session 12's code settings (levels, codebook size, k-means iterations, seed) for ``preset``."""
    from ..config import load_config

    return load_config("semantic_ids", preset).codes


def code_sets(dataset, preset: str | None = None, *, retriever: torch.nn.Module | None = None,
              retriever_name: str = RETRIEVER, text_vectors: torch.Tensor | None = None,
              log=print) -> dict[str, object]:
    """The code sets session 16 compares, built with the same session-12 function and settings.

    Args:
        dataset: a ``RecDataset``.
        preset: picks session 12's settings (``semantic_ids.yaml``).
        retriever: a trained two-tower model; without it there is no collaborative set.
        text_vectors: the items' text vectors; default session 11's ``item_text_vectors`` (cached on disk).

    Returns:
        ``{"collaborative": SemanticIDs, "text": SemanticIDs}`` (collaborative only with a retriever).
    """
    from .coldstart import item_text_vectors, load_text_model
    from .semantic_ids import build_semantic_ids

    codes = semantic_id_settings(preset)
    fingerprint = dataset.meta["fingerprint"]

    def build(vectors: torch.Tensor, source: str):
        return build_semantic_ids(vectors, levels=codes.levels, codebook_size=codes.codebook_size, seed=codes.seed,
                                  source=source, fingerprint=fingerprint, niter=codes.niter)

    out = {}
    if retriever is not None:
        out[COLLABORATIVE] = build(collaborative_vectors(retriever), f"collaborative:{retriever_name}")
    if text_vectors is None:
        model = load_text_model(log=log)
        text_vectors, source = item_text_vectors(dataset, model, progress=False, log=log), f"text:{model.name}"
    else:
        source = "text:given"
    out[TEXT] = build(torch.as_tensor(text_vectors), source)
    return out


def shorter_run(cfg, first_steps: int):
    """The config of the second code set's run: ``train.second_share`` of the first run's steps and minutes.

    With ``second_share`` 1.0 (the smoke and gpu presets), ``cfg`` itself: both code sets train alike.
    """
    from ..config import load_config

    share = cfg.train.second_share
    if share >= 1.0:
        return cfg
    overrides = {"train.max_steps": max(1, int(first_steps * share))}
    if cfg.train.max_minutes:
        overrides["train.max_minutes"] = cfg.train.max_minutes * share
    return load_config("generative", cfg.preset, overrides=overrides)


# --- pipeline stage ------------------------------------------------------------------------------

def _stage_generative(ctx) -> None:
    from ..config import as_dict, load_config
    from ..tracking import describe_run, init_run
    from .cache import load_or_train

    cfg = load_config("generative", preset=ctx.preset)
    s16 = ctx.session(16)
    retriever = ctx.artifacts.get("retrievers", {}).get(RETRIEVER)
    if retriever is None:
        print(f"   no `{RETRIEVER}` retriever in this run (stage two-tower-transformer): text codes only")
    sets = code_sets(ctx.dataset, ctx.preset, retriever=retriever)
    results, models, run_cfgs = {}, {}, {}
    for i, (name, sids) in enumerate(sets.items()):
        print(f"   {name} codes: {sids.describe().splitlines()[0]}")
        # the second code set may train shorter (the laptop budget): train.second_share
        run_cfg = shorter_run(cfg, results[next(iter(results))]["steps"]) if i else cfg

        def train(checkpoint, sids=sids, name=name, run_cfg=run_cfg):
            run = init_run(f"pipeline-{ctx.dataset_name}-generative-{name}",
                           config={**as_dict(run_cfg), "codes": sids.source, "dataset": ctx.dataset_name},
                           group="pipeline")
            print(f"   {describe_run(run)}")
            try:
                model, result = s16.train_generative(ctx.dataset, sids, run_cfg, device=ctx.device, run=run,
                                                     checkpoint_path=checkpoint, log=lambda line: None)
            finally:
                run.finish()
            keep = ("steps", "epochs", "seconds", "tokens_per_second", "examples_per_second", "final_loss",
                    "stopped_by", "valid", "amp_dtype", "parameters")
            result = {k: result[k] for k in keep if k in result}
            # the test metrics are stored with the model: beam search over every test user is minutes on a
            # CPU, and a second run on an unchanged tree must take seconds
            start = time.perf_counter()
            result["test"] = s16.evaluate_generative(model, sids, ctx.dataset, "test", run_cfg, ks=(10, 50),
                                                     device=ctx.device)
            result["test_seconds"] = time.perf_counter() - start
            result["codebook_sizes"] = list(sids.codebook_sizes)
            return model, result

        def load(checkpoint, sids=sids, run_cfg=run_cfg):
            model = s16.build_generative(sids, run_cfg)
            model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
            return model.to(ctx.device).eval()

        config = {**as_dict(run_cfg), "codes": sids.source, "code_fingerprint": content_digest(sids.codes)}
        model, result, reused = load_or_train(ctx, f"generative-{name}", config=config, sessions=(3, 4, 5, 16),
                                              train=train, load=load, modules=(__name__,))
        result["reused"] = reused
        results[name], models[name], run_cfgs[name] = result, model, run_cfg
        print(f"   {name}: {result['parameters']:,} parameters, {result['steps']} steps in {result['seconds']:.0f} s "
              f"({result['tokens_per_second']:,.0f} tokens/s), valid HR@10 {result['valid']['HR@10']:.4f}, test "
              f"beam search {result['test_seconds']:.0f} s" + (" (cached)" if reused else ""))
    best = max(results, key=lambda n: (results[n]["valid"]["HR@10"], results[n]["valid"]["NDCG@10"]))
    order = [best] + [n for n in results if n != best]
    for name in order:
        result, sids = results[name], sets[name]
        metrics = result["test"]
        note = (f"session 16; {name} codes {'x'.join(map(str, sids.codebook_sizes))}, {result['parameters'] / 1e6:.2f}M "
                f"params, {result['steps']} steps, {result['seconds']:.0f} s, {result['tokens_per_second']:,.0f} tokens/s, "
                f"beam {cfg.generate.beam_size}"
                + (f", {cfg.train.second_share:.0%} of the first set's training" if run_cfgs[name] is not cfg else "")
                + (", stopped by the time cap (max_minutes)" if result.get("stopped_by") == "max_minutes" else "")
                + (" (cached)" if result["reused"] else ""))
        ctx.table.add("generative" if name == best else f"generative ({name} codes)", metrics, note)
    ctx.artifacts["generative"] = {"models": models, "code_sets": sets, "best": best}


_NEEDS = {3: ("RMSNorm", "apply_rope", "TransformerBlock"), 4: ("build_optimizer",),
          5: ("warmup_cosine", "save_checkpoint", "train_step", "fit"),
          11: ("format_item_text", "mean_pool", "encode_texts", "cached_encode"),
          12: ("residual_kmeans", "reconstruction_errors", "codebook_utilization", "disambiguate"), 16: ()}

STAGES = [
    Stage("generative", _stage_generative, "generative retrieval: a decoder over semantic IDs, trie-constrained beam "
          "search, text vs collaborative codes (sessions 11, 12, 16)", needs=_NEEDS),
]
