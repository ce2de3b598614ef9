"""Serving (sessions 14 and 15): the model bundle, the FastAPI app, micro-batching glue, load tests.

    bundle      the model bundle the pipeline writes and the service loads once (manifest, checks)
    glue        provided pieces of the request path (padding, text candidates, ranker features, response body)
    errors      the 4xx errors the endpoint logic raises, and their JSON
    app         the FastAPI scaffold: routes, error handlers, body-size limit, Server-Timing, the batched path
    server      ``python -m harness serve`` (uvicorn) and real servers in subprocesses (tests, notebooks, pipeline)
    cli         the arguments of ``python -m harness serve``
    corpus      the bad-input corpus: requests that must get a 4xx
    loadtest    Locust (headless, bounded, loopback) and schemathesis runs, their results parsed
    locustfile  the provided load-test script (run by Locust in its own process, never imported here)
    testing     a tiny bundle for tests, built in seconds

Sessions 14 and 15 write the endpoint logic and the micro-batcher; ``harness/pipeline/serving.py``
has the pipeline's stages (``serving-bundle``, ``serving``). Servers, load tests and fuzzing only
ever target loopback addresses.
"""
