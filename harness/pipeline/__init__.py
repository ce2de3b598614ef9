"""The glue of each track, and the stages of ``python -m harness pipeline``.

    runner      Context, Stage and ``run_pipeline``: every stage of every track, in order
    cache       trained models reused while their data, config and code are unchanged
    retrieval   popularity and two-tower stages; windowed training data, two-tower evaluation
    train       ``python -m harness train``: a two-tower run, also under torchrun (DDP)

Each track module (``retrieval``, ``ranking``, ``coldstart``, ``semantic_ids``, ``generative``,
``serving``) defines ``STAGES``, a list of :class:`~harness.pipeline.runner.Stage`; the runner
takes them in the order of ``runner.TRACKS``.
"""
from .runner import Context, Stage, run_pipeline

__all__ = ["Context", "Stage", "run_pipeline"]
