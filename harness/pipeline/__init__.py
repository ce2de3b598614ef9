"""The glue of each track, and the stages of ``python -m harness pipeline``.

    runner      Context, Stage and ``run_pipeline``: every stage of every track, in order
    cache       trained models reused while their data, config and code are unchanged
    retrieval   popularity and two-tower stages; windowed training data, two-tower evaluation
    features    the ranking feature builder (every dataset schema, serving histories)
    ranking     the DLRM stage; the ranker's training data (hard negatives), retrieve -> rank evaluation
    coldstart   the cold-start protocol, item text vectors, the text retriever, cold / warm rankers
    semantic_ids  semantic IDs of the text vectors, saved for session 16; continuous vs discrete A/B
    generative  the decoder over semantic IDs, text vs collaborative codes
    serving     the model bundle and real servers under Locust loads, batched vs unbatched
    train       ``python -m harness train``: a two-tower run, also under torchrun (DDP)

Each track module (``retrieval``, ``ranking``, ``coldstart``, ``semantic_ids``, ``generative``,
``serving``) defines ``STAGES``, a list of :class:`~harness.pipeline.runner.Stage`; the runner
takes them in the order of ``runner.TRACKS``.
"""
from .runner import Context, Stage, run_pipeline

__all__ = ["Context", "Stage", "run_pipeline"]
