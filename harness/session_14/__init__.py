"""Session 14 — serving I: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=14,
    slug="serving",
    title="Serving I: FastAPI /recommend (retrieve -> rank -> top-k), validation, cold-visitor fallback",
    exercises=(
        Exercise(
            "request_model",
            summary="the pydantic request body: user_id or history, and k, strict, with the limits in the schema",
            hint="Inside the function: class RecommendRequest(BaseModel) with model_config = ConfigDict(extra='forbid', "
                 "strict=True); user_id: int | None = Field(None, ge=1); history: list[Annotated[int, Field(ge=1)]] | "
                 "None = Field(None, max_length=limits.max_history); k: int = Field(10, ge=1, le=limits.max_k); a "
                 "@model_validator(mode='after') raising ValueError when user_id is set and history is not None; "
                 "return RecommendRequest (the class, not an instance)."),
        Exercise(
            "response_model",
            summary="the pydantic response: ranked items (id >= 1, title, finite score, cold), fallback, strategy",
            hint="class RecommendedItem(BaseModel): item_id: int = Field(ge=1); title: str; score: float = "
                 "Field(allow_inf_nan=False); cold: bool. class RecommendResponse(BaseModel): user_id: int | None; "
                 "items: list[RecommendedItem]; fallback: bool; strategy: Literal['retrieve-rank', 'popularity']; "
                 "bundle_id: str; and a @model_validator(mode='after') that raises ValueError on a repeated item_id, "
                 "on a score larger than the one before it, or when fallback != (strategy == 'popularity')."),
        Exercise(
            "resolve_query",
            summary="request -> Query: a known user's stored history, or the request's own; 404 / 422 otherwise",
            hint="if request.user_id is not None: raise UnknownUser(request.user_id, bundle.n_users) unless "
                 "bundle.knows_user(...), else return Query(user_id, tuple(bundle.user_history(user_id))). For a "
                 "history, collect (position, id) of every id outside 1..bundle.n_items and raise UnknownItems("
                 "positions, ids, bundle.n_items) if any; else Query(0, tuple(history)). Neither: Query(). Compare "
                 "plain Python ints: never build a tensor before the ids are checked."),
        Exercise(
            "rank_candidates",
            summary="retrieve (FAISS, seen excluded) + cold items by text -> DLRM rerank -> top-k, batched, no autograd",
            hint="with torch.inference_mode(): history, mask = pad_histories(histories, bundle.max_len); q = "
                 "bundle.retriever.user_tower(history, mask); seen = padded_seen(histories); r = search_excluding_seen("
                 "bundle.index, q, seen, bundle.n_candidates); c = torch.cat([r, text_candidates(bundle, histories, "
                 "torch.cat([seen, r], 1))], 1); logits = bundle.ranker(ranker_batch(bundle, users, histories, c, q))"
                 ".float().reshape(B, -1).masked_fill(c == 0, -inf); scores, order = torch.sort(logits, 1, "
                 "descending=True, stable=True); keep [:, :k]; ids = c.gather(1, order[:, :k]), 0 where the score is -inf."),
        Exercise(
            "recommend",
            summary="one request end to end: resolve, popularity fallback for a cold visitor, else rank; the body",
            hint="query = resolve_query(bundle, request). If query.cold: ids = bundle.popular[:request.k]; return "
                 "response_body(bundle, query, ids, bundle.popularity[ids].astype(float), fallback=True). Else ids, "
                 "scores = rank_candidates(bundle, [query.user_id], [query.history], request.k) and return "
                 "response_body(bundle, query, ids[0], scores[0], fallback=False)."),
        Exercise(
            "lifespan",
            summary="start-up: load the bundle once, every model in eval mode without gradients, into app.state",
            hint="settings = app.state.settings; bundle = load_bundle(settings.bundle_path, **settings.load_options); "
                 "for m in bundle.models(): m.eval(); m.requires_grad_(False); app.state.bundle = bundle (before the "
                 "provided yield). Nothing in the endpoint may call load_bundle again."),
        Exercise(
            "recommend_endpoint",
            summary="the async endpoint: 503 when not ready, else recommend() in a worker thread (never on the loop)",
            hint="bundle = request.app.state.bundle; if bundle is None: raise NotReady(); return await "
                 "run_in_threadpool(recommend, bundle, body). Calling recommend(...) directly inside an async def "
                 "blocks the event loop: every other request, /health included, waits for the model."),
        Exercise(
            "health",
            summary="readiness: 503 until the bundle is loaded, then {'status': 'ok', **bundle.summary()}",
            hint="bundle = request.app.state.bundle; if bundle is None: raise NotReady(); return {'status': 'ok', "
                 "**bundle.summary()}. A health check that answers 200 before the models are loaded sends traffic "
                 "to an instance that cannot serve it."),
    ),
)
