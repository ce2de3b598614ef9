"""What ``python -m harness bench`` measures: one :class:`Case` per model or search, in :data:`CASES`.

A case builds its workload from a session's code (``ctx.session(n)``: the reference, or the
learner's notebook with ``--impl sessions``) at the pipeline's sizes, with the weights a
pipeline run left in ``runs/pipeline/`` when there are any and random ones otherwise (the time a
model takes does not depend on its weights). A case whose session has no notebook yet, or whose
exercises are still stubs, is skipped with the reason; nothing is faked.

A model case returns a :class:`Built` with an ``inference`` and/or a ``train`` :class:`Workload`:
a module whose ``forward(*inputs)`` is what gets compiled and timed (for ``train``, ``forward``
returns the scalar loss, and the timed step adds backward and an AdamW update). A search case
returns a :class:`SearchWorkload`: indexes to time on one batch of queries.

Adding a case (sessions 14-16): write a ``build(ctx) -> Built`` function below and append a
``Case`` to :data:`CASES` at the place marked for your session. Raise :class:`CaseSkipped` with a
message that says what to do when something the case needs is missing.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..autograder.loader import NotebookError, notebook_path
from ..paths import display_path, runs_dir

INFERENCE_BATCH = 256  # histories (or candidate pairs) per inference call: the performance report's batch


class CaseSkipped(Exception):
    """A case cannot run here; the message says why and what to do."""


@dataclass
class Workload:
    """A module and one batch of inputs: ``module(*inputs)`` is the timed call."""

    module: nn.Module
    inputs: tuple
    batch: int  # examples per call, for throughput
    label: str  # what one call processes, e.g. "256 histories x 50"


@dataclass
class SearchWorkload:
    """FAISS indexes to time on one batch of queries; ``indexes[0]`` is the exact one."""

    indexes: list[tuple[str, Any, dict]]  # (name, index, info: nprobe, build_s, ...)
    queries: np.ndarray  # float32 (B, d)
    k: int
    search_ids: Callable[[Any, np.ndarray, int], torch.Tensor]  # session 06's label -> item id mapping
    ann_recall: Callable[[torch.Tensor, torch.Tensor], float]
    label: str


@dataclass
class ServingWorkload:
    """The /recommend path in process (no HTTP): ``paths`` are (name, call(), requests per call)."""

    paths: list[tuple[str, Callable[[], Any], int]]
    label: str


@dataclass
class Built:
    inference: Workload | None = None
    train: Workload | None = None
    search: SearchWorkload | None = None
    serving: ServingWorkload | None = None
    weights: str = "random init"
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchContext:
    """What every case builder gets: the device, the dataset and the notebook tree to build from."""

    device: torch.device
    dataset_name: str = "ml-100k"
    preset: str = "laptop"
    impl: str = "solutions"
    inference_batch: int = INFERENCE_BATCH
    seed: int = 0
    _dataset: Any = None
    _shared: dict = field(default_factory=dict)

    @property
    def dataset(self):
        if self._dataset is None:
            from ..data import DATASETS, load_dataset

            presets = DATASETS[self.dataset_name].presets if self.dataset_name in DATASETS else ()
            self._dataset = load_dataset(self.dataset_name, self.preset if self.preset in presets else None)
        return self._dataset

    def session(self, number: int):
        """Session ``number``'s export cells from this run's tree (``CaseSkipped`` when absent or broken)."""
        from ..autograder.loader import load_session

        try:
            return load_session(number, self.impl)
        except NotebookError as err:
            raise CaseSkipped(f"session {number:02d}: {err}") from None

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """One object built once per run and shared by the cases that need it (a trained tower, say)."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def pipeline_checkpoint(self, name: str) -> Path | None:
        """``runs/pipeline/<dataset>-<preset>-<impl>/<name>.pt`` when a pipeline run finished training it.

        The pipeline writes the checkpoint during training and its record (``<name>.json``) only when
        training is done, so a checkpoint without a record at least as recent is a run still in progress.
        """
        folder = runs_dir() / "pipeline" / f"{self.dataset_name}-{self.preset}-{self.impl}"
        path, record = folder / f"{name}.pt", folder / f"{name}.json"
        if path.is_file() and record.is_file() and record.stat().st_mtime >= path.stat().st_mtime - 1.0:
            return path
        return None


def load_pipeline_weights(ctx: BenchContext, model: nn.Module, name: str) -> str:
    """Load the pipeline's checkpoint ``name`` into ``model`` if there is a matching one; say which weights it has."""
    path = ctx.pipeline_checkpoint(name)
    if path is None:
        return "random init (no finished pipeline checkpoint: `python -m harness pipeline` trains one)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state)
    except Exception as err:  # a checkpoint of other sizes, or unreadable: time it with random weights
        return f"random init ({display_path(path)} does not fit: {type(err).__name__})"
    return f"pipeline checkpoint {display_path(path)}"


def missing_exercises(ctx: BenchContext, needs: dict[int, tuple[str, ...]]) -> None:
    """``CaseSkipped`` when a session of ``needs`` has no notebook, or (learner's tree) the exercises are stubs.

    The reference has no stubs, so for ``solutions`` only the notebooks' presence is checked (the stub
    scan imports nbgrader, seconds on a busy machine).
    """
    for number in needs:
        try:
            notebook_path(number, ctx.impl)
        except NotebookError:
            raise CaseSkipped(f"session {number:02d} has no notebook in {ctx.impl}/ yet") from None
    if ctx.impl == "solutions":
        return
    from ..autograder.exercises import get_session
    from ..autograder.stubs import unwritten_exercises

    missing = []
    for number, names in needs.items():
        unwritten = dict(unwritten_exercises(number, ctx.impl))
        try:
            wanted = names or tuple(e.name for e in get_session(number).exercises)
        except KeyError:
            wanted = names
        missing += [f"`{n}` of session {number:02d}" for n in wanted if n in unwritten]
    if missing:
        raise CaseSkipped("not written yet: " + ", ".join(missing))


# --- the two-tower models (sessions 02-05) ------------------------------------------------------

class TwoTowerLoss(nn.Module):
    """Session 04's in-batch softmax loss over every position of a batch of windows, as one module."""

    def __init__(self, model: nn.Module, loss_fn: Callable, temperature: float, log_q: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.temperature = temperature
        self.register_buffer("log_q", log_q, persistent=False)

    def forward(self, history: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        batch = {"history": history, "mask": mask, "target": target}
        return self.loss_fn(self.model, batch, self.temperature, self.log_q)


class CatalogScorer(nn.Module):
    """The item tower over the whole catalog and the score matrix of a batch of user vectors.

    ``forward(users)``: float (B, d) -> (B, n_items + 1), column 0 (padding) = -inf, as session 03's
    ``score_all_items`` computes it once the user tower has run.
    """

    def __init__(self, item_tower: nn.Module, n_items: int):
        super().__init__()
        self.item_tower = item_tower
        self.register_buffer("ids", torch.arange(n_items + 1), persistent=False)

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        scores = users @ self.item_tower(self.ids).T
        scores[:, 0] = -math.inf
        return scores


_TWO_TOWER_NEEDS = {2: ("NextItemDataset", "collate_sequences"), 3: (),
                    4: ("item_log_q", "in_batch_softmax_loss", "contrastive_batch_loss")}


def _two_tower_model(ctx: BenchContext, tower: str) -> tuple[nn.Module, str]:
    def make():
        from ..config import load_config
        from ..pipeline.retrieval import build_tower_from_config

        missing_exercises(ctx, {3: ()})
        cfg = load_config("two_tower", preset=ctx.preset)
        torch.manual_seed(ctx.seed)
        model = build_tower_from_config(ctx.dataset, tower, cfg)
        weights = load_pipeline_weights(ctx, model, f"two-tower-{tower}")
        return model.to(ctx.device), weights

    return ctx.shared(f"two-tower-{tower}", make)


def _histories(ctx: BenchContext, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``inference_batch`` real test histories (users cycled when there are fewer), left-padded."""
    from ..pipeline.retrieval import history_batch

    ds = ctx.dataset
    users, _ = ds.targets("test")
    users = np.resize(np.asarray(users), ctx.inference_batch)
    batch = history_batch(ds.sequences("test"), users.tolist(), max_len)
    return batch["history"].to(ctx.device), batch["mask"].to(ctx.device)


def _training_batch(ctx: BenchContext, cfg) -> dict:
    """One training batch of ``cfg.train.batch_size`` windows, collated as session 05's ``fit`` does."""
    from ..pipeline.retrieval import windowed_examples

    examples = windowed_examples(ctx.dataset.sequences(upto="valid"), cfg.train.max_len)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(ctx.seed))
    rows = [examples[int(i)] for i in order[:cfg.train.batch_size]]
    batch = ctx.session(2).collate_sequences(rows)
    return {k: batch[k].to(ctx.device) for k in ("history", "mask", "target")}


def build_two_tower(ctx: BenchContext, tower: str) -> Built:
    """The user tower at inference (256 test histories) and the two-tower training step (session 04's loss)."""
    from ..config import load_config

    missing_exercises(ctx, _TWO_TOWER_NEEDS)
    cfg = load_config("two_tower", preset=ctx.preset)
    model, weights = _two_tower_model(ctx, tower)
    history, mask = _histories(ctx, cfg.train.max_len)
    inference = Workload(model.user_tower, (history, mask), len(history),
                         f"{len(history)} histories x {history.shape[1]}")
    s04 = ctx.session(4)
    log_q = s04.item_log_q(torch.from_numpy(ctx.dataset.item_counts(upto="valid"))).to(ctx.device)
    batch = _training_batch(ctx, cfg)
    loss = TwoTowerLoss(model, s04.contrastive_batch_loss, cfg.train.temperature, log_q if cfg.train.log_q else None)
    train = Workload(loss, (batch["history"], batch["mask"], batch["target"]), len(batch["history"]),
                     f"{len(batch['history'])} windows x {batch['history'].shape[1]}, {int(batch['mask'].sum()):,} "
                     "positions (in-batch softmax, AdamW)")
    return Built(inference=inference, train=train, weights=weights,
                 notes=[f"dim {cfg.model.dim}" + (f", {cfg.model.layers} layers, {cfg.model.heads} heads"
                                                 if tower == "transformer" else "")])


def build_item_scoring(ctx: BenchContext) -> Built:
    """The Transformer two-tower's item tower over the catalog, scored against 256 user vectors."""
    from ..config import load_config

    missing_exercises(ctx, {3: ("ItemTower",)})
    cfg = load_config("two_tower", preset=ctx.preset)
    model, weights = _two_tower_model(ctx, "transformer")
    history, mask = _histories(ctx, cfg.train.max_len)
    with torch.no_grad():
        users = model.eval().user_tower(history, mask).detach()
    scorer = CatalogScorer(model.item_tower, ctx.dataset.n_items).to(ctx.device)
    return Built(inference=Workload(scorer, (users,), len(users),
                                    f"{len(users)} users x {ctx.dataset.n_items + 1:,} items"), weights=weights)


# --- FAISS (session 06) ----------------------------------------------------------------------------

def build_faiss(ctx: BenchContext) -> Built:
    """Exact vs IVF search for 256 real user vectors over a catalog grown from the item embeddings."""
    from ..config import load_config

    missing_exercises(ctx, {6: ("maybe_to_gpu", "build_flat_index", "build_ivf_index", "ann_recall", "recall_at_k"),
                            3: ()})
    s06 = ctx.session(6)
    cfg = load_config("two_tower", preset=ctx.preset)
    model, weights = _two_tower_model(ctx, "transformer")
    history, mask = _histories(ctx, cfg.train.max_len)
    with torch.no_grad():
        model.eval()
        items = model.item_tower(torch.arange(ctx.dataset.n_items + 1, device=ctx.device)).float().cpu()
        queries = s06.faiss_array(model.user_tower(history, mask))
    n_catalog = 20_000 if ctx.preset == "smoke" else 100_000
    catalog = s06.synthetic_catalog(items, max(n_catalog, ctx.dataset.n_items))
    nlist = 2 ** round(math.log2(4 * math.sqrt(len(catalog) - 1)))
    use_gpu = ctx.device.type == "cuda" and s06.faiss_gpu_available()
    where = "GPU" if use_gpu else "CPU"
    indexes = []
    start = time.perf_counter()
    flat = s06.build_flat_index(catalog, use_gpu=use_gpu)
    indexes.append(("flat (exact)", flat, {"nprobe": None, "build_s": time.perf_counter() - start, "where": where}))
    for nprobe in (16, 64):
        start = time.perf_counter()
        ivf = s06.build_ivf_index(catalog, nlist=nlist, nprobe=nprobe, use_gpu=use_gpu)
        indexes.append((f"IVF{nlist}", ivf, {"nprobe": nprobe, "build_s": time.perf_counter() - start,
                                             "where": where}))
    label = f"{len(queries)} queries, k=10, {len(catalog) - 1:,} items x {catalog.shape[1]} dims, FAISS on {where}"
    notes = [f"catalog grown from the {ctx.dataset.n_items:,} real items with session 06's synthetic_catalog"]
    if not use_gpu and ctx.device.type == "cuda":
        notes.append("FAISS sees no GPU (a faiss-cpu build): the indexes run on the CPU")
    return Built(search=SearchWorkload(indexes, queries, 10, s06.search_ids, s06.ann_recall, label),
                 weights=weights, notes=notes)


# --- DLRM (session 07) -----------------------------------------------------------------------------

def build_dlrm(ctx: BenchContext) -> Built:
    """Session 07's DLRM on the ranking features (``harness.pipeline.features``), at ``configs/dlrm.yaml``'s sizes.

    Inference: 256 (test user, candidate item) pairs featurised as a ranker sees them at test time.
    Training step: ``train.batch_size`` positives with ``train.negatives`` uniform negatives each, featurised at
    the positive's position (as session 07's training run does), BCE with logits, AdamW.
    Interface used: ``build_dlrm(spec, cfg) -> nn.Module`` whose ``forward(batch: dict) -> logits (B,)``.
    """
    from ..config import load_config
    from ..pipeline.features import FeatureBuilder

    try:
        notebook_path(7, ctx.impl)
    except NotebookError:
        raise CaseSkipped("session 07 (DLRM) has no notebook yet") from None
    missing_exercises(ctx, {7: ()})
    s07 = ctx.session(7)
    cfg = load_config("dlrm", preset=ctx.preset)
    ds = ctx.dataset
    builder = ctx.shared("features", lambda: FeatureBuilder.fit(
        ds, "valid", history_len=cfg.features.history_len, min_count=cfg.features.min_count,
        max_vocab=cfg.features.max_vocab))
    torch.manual_seed(ctx.seed)
    model = s07.build_dlrm(builder.spec, cfg)
    # The pipeline's ranker without the retrieval score has exactly these features (the one with it has
    # one more dense column); the time does not depend on the weights either way.
    weights = load_pipeline_weights(ctx, model, "ranker-dlrm-no-score")
    model = model.to(ctx.device)
    g = torch.Generator().manual_seed(ctx.seed)

    users, _ = ds.targets("test")
    users = torch.as_tensor(np.resize(np.asarray(users), ctx.inference_batch))
    candidates = torch.randint(1, ds.n_items + 1, (ctx.inference_batch,), generator=g)
    test_batch = builder.at(ds, "test").batch(users, candidates)

    positives = builder.positives()
    rows = torch.randperm(len(positives.users), generator=g)[:cfg.train.batch_size]
    k = 1 + cfg.train.negatives
    pair_users = positives.users[rows].repeat_interleave(k)
    pair_positions = positives.positions[rows].repeat_interleave(k)
    pair_items = positives.items[rows].repeat_interleave(k)
    negative = torch.arange(len(pair_items)) % k != 0
    pair_items[negative] = torch.randint(1, ds.n_items + 1, (int(negative.sum()),), generator=g)
    train_batch = builder.batch(pair_users, pair_items, positions=pair_positions)
    labels = (~negative).float()

    keys = tuple(sorted(test_batch))
    inference = Workload(DictForward(model, keys), tuple(test_batch[k].to(ctx.device) for k in keys), len(users),
                         f"{len(users)} (user, candidate) pairs")
    train = Workload(BCELoss(model, keys), tuple(train_batch[k].to(ctx.device) for k in keys)
                     + (labels.to(ctx.device),), len(labels),
                     f"{len(rows)} positives x (1 + {cfg.train.negatives} negatives) = {len(labels):,} pairs "
                     "(BCE with logits, AdamW)")
    return Built(inference=inference, train=train, weights=weights,
                 notes=[f"dim {cfg.model.dim}, bottom {list(cfg.model.bottom)}, top {list(cfg.model.top)}, "
                        f"{len(builder.spec.tables)} tables"])


class DictForward(nn.Module):
    """A model that takes a dict batch, called with the dict's tensors as positional inputs."""

    def __init__(self, model: nn.Module, keys: tuple[str, ...]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.keys, tensors)))


class BCELoss(DictForward):
    """``DictForward`` plus binary cross-entropy against the last input (labels in {0, 1})."""

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        logits = self.model(dict(zip(self.keys, tensors[:-1])))
        return nn.functional.binary_cross_entropy_with_logits(logits.float().reshape(-1), tensors[-1])


# --- the generative decoder (session 16) -----------------------------------------------------------

class NextTokenLoss(nn.Module):
    """Session 16's next-token cross-entropy of a decoder, as one module: ``forward(inputs, targets)``."""

    def __init__(self, model: nn.Module, loss_fn: Callable):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model, {"inputs": inputs, "targets": targets})


def build_decoder(ctx: BenchContext) -> Built:
    """Session 16's decoder over semantic-ID tokens at ``configs/generative.yaml``'s sizes.

    Inference: the prompt pass of generation, 256 test histories of ``max_items`` items as left-padded token
    sequences -> logits. Training step: a batch of next-token windows, cross-entropy, AdamW. The codes are
    random ones of session 12's shape (the time does not depend on which item has which code), with the
    codebook sizes of the pipeline's collaborative run when it left a checkpoint, whose weights are then used.
    Beam search itself (topk over data-dependent beams, a growing cache) is timed by the session-16 notebook.
    """
    import json

    from ..config import load_config
    from ..pipeline.generative import semantic_id_settings

    missing_exercises(ctx, {16: ("item_token_table", "history_tokens", "next_token_examples", "causal_attention",
                                 "DecoderBlock", "GenerativeDecoder"), 3: ("RMSNorm", "apply_rope", "TransformerBlock")})
    s16 = ctx.session(16)
    cfg = load_config("generative", preset=ctx.preset)
    codes_cfg = semantic_id_settings(ctx.preset)
    ds = ctx.dataset
    k = min(codes_cfg.codebook_size, ds.n_items)
    sizes = (k,) * codes_cfg.levels + (4,)
    record = ctx.pipeline_checkpoint("generative-collaborative")
    if record is not None and record.with_suffix(".json").is_file():
        saved = json.loads(record.with_suffix(".json").read_text()).get("result", {})
        sizes = tuple(saved.get("codebook_sizes", sizes))
    g = torch.Generator().manual_seed(ctx.seed)
    codes = torch.stack([torch.randint(0, s, (ds.n_items + 1,), generator=g) for s in sizes], dim=1)
    codes[0] = 0
    table = s16.item_token_table(codes, sizes)
    torch.manual_seed(ctx.seed)
    model = s16.GenerativeDecoder(s16.vocab_size(sizes), dim=cfg.model.dim, layers=cfg.model.layers,
                                  heads=cfg.model.heads, dropout=cfg.model.dropout)
    weights = load_pipeline_weights(ctx, model, "generative-collaborative")
    model = model.to(ctx.device)
    users, _ = ds.targets("test")
    users = np.resize(np.asarray(users), ctx.inference_batch)
    sequences = ds.sequences("test")
    prompts = s16.history_tokens([sequences[int(u)] for u in users], table, cfg.train.max_items).to(ctx.device)
    examples = s16.next_token_examples(ds, table, cfg.train.max_items)
    rows = torch.randperm(len(examples["inputs"]), generator=g)[:cfg.train.batch_size]
    inputs, targets = examples["inputs"][rows].to(ctx.device), examples["targets"][rows].to(ctx.device)
    n_params = sum(p.numel() for p in model.parameters())
    inference = Workload(model, (prompts,), len(prompts), f"{len(prompts)} prompts x {prompts.shape[1]} tokens")
    train = Workload(NextTokenLoss(model, s16.next_token_loss), (inputs, targets), len(inputs),
                     f"{len(inputs)} windows x {inputs.shape[1]} tokens, {int((targets != s16.IGNORE).sum()):,} "
                     "targets (cross-entropy, AdamW)")
    return Built(inference=inference, train=train, weights=weights,
                 notes=[f"dim {cfg.model.dim}, {cfg.model.layers} layers, {cfg.model.heads} heads, vocabulary "
                        f"{s16.vocab_size(sizes)}, {n_params:,} parameters"])


# --- the serving path (sessions 14-15) --------------------------------------------------------------

SERVING_BATCHES = (1, 8, 32)  # requests per rank_batch call: one alone, and micro-batches of the server


def build_serving(ctx: BenchContext) -> Built:
    """The model bundle's retrieve -> rank -> top-10 for known users, as the server runs it, without HTTP.

    Session 15's ``rank_batch`` (one session-14 ``rank_candidates`` call: user tower, FAISS search, DLRM
    rerank) over the same B users at every call, for B in ``SERVING_BATCHES``; the bundle is the one the
    pipeline wrote (``runs/bundles/``), and nothing is trained. The end-to-end latency under load, over
    HTTP, is the pipeline's serving stage and session 15's load test.
    """
    from ..serving.bundle import BundleError, bundle_dir, check_manifest, load_for_inference, read_manifest
    from ..serving.glue import Query

    missing_exercises(ctx, {14: ("resolve_query", "rank_candidates"), 15: ("rank_batch",)})
    path = bundle_dir(ctx.dataset_name, ctx.preset, ctx.impl)
    if ctx.dataset_name == "synthetic" and ctx.preset == "smoke":
        from ..pipeline.serving import ensure_bundle

        path = ensure_bundle(ctx.dataset_name, ctx.preset, ctx.impl, log=False)  # the seconds-old test bundle
    try:
        check_manifest(read_manifest(path), path, expect_fingerprint=ctx.dataset.meta.get("fingerprint"))
    except (BundleError, FileNotFoundError) as err:
        raise CaseSkipped(f"no usable model bundle at {display_path(path)} ({str(err).splitlines()[0][:120]}): "
                          f"`python -m harness pipeline --dataset {ctx.dataset_name} --preset {ctx.preset}` writes "
                          "one") from None
    bundle = load_for_inference(path, device=ctx.device)
    rank_batch = ctx.session(15).rank_batch
    users = [u for u in range(1, bundle.n_users + 1) if bundle.knows_user(u)]
    rng = np.random.default_rng(ctx.seed)
    paths = []
    for b in SERVING_BATCHES:
        queries = [Query(int(u), tuple(bundle.user_history(int(u)))) for u in rng.choice(users, b)]

        def call(queries=queries):
            with torch.no_grad():
                return rank_batch(bundle, queries, [10] * len(queries))

        paths.append((f"rank_batch x {b}", call, b))
    manifest = read_manifest(path)
    return Built(serving=ServingWorkload(paths, "known users, top-10, retrieve -> rank in process"),
                 weights=f"model bundle {display_path(path)}",
                 notes=[f"bundle {manifest.get('bundle_id', '?')}: retriever `{manifest.get('retriever', {}).get('name', '?')}`"
                        f", ranker `{manifest.get('ranker', {}).get('name', '?')}`"])


# --- the list ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    sessions: tuple[int, ...]
    description: str
    build: Callable[[BenchContext], Built]


CASES: list[Case] = [
    Case("two-tower mean", (2, 3, 4), "mean-pool user tower (inference) and the two-tower training step",
         lambda ctx: build_two_tower(ctx, "mean")),
    Case("two-tower transformer", (2, 3, 4), "causal Transformer user tower (inference) and the training step",
         lambda ctx: build_two_tower(ctx, "transformer")),
    Case("item tower scoring", (3,), "item tower over the whole catalog + the score matrix of 256 users",
         build_item_scoring),
    Case("dlrm", (7,), "DLRM ranker on the ranking features (inference and a BCE training step)", build_dlrm),
    Case("faiss", (6, 3), "FAISS exact (flat) vs IVF search, 256 queries over a 100,000-item catalog", build_faiss),
    Case("serving", (14, 15), "the /recommend path in process: retrieve -> rank -> top-10 for 1, 8 and 32 "
         "requests in one batch", build_serving),
    Case("decoder", (16, 3), "session 16's decoder over semantic-ID tokens: the prompt pass (inference) and a "
         "next-token training step", build_decoder),
]

# Cases whose sessions are not written yet: listed in the report as skipped, with who fills them in.
PLANNED: dict[str, tuple[int, str]] = {}


def find_cases(names: list[str] | None) -> tuple[list[Case], list[tuple[str, str]]]:
    """The cases to run (all when ``names`` is empty) and (name, reason) for planned ones asked for or listed."""
    known = {c.name: c for c in CASES}
    if not names:
        return list(CASES), [(n, f"planned: {why}") for n, (_, why) in PLANNED.items() if n not in known]
    chosen, planned, unknown = [], [], []
    for name in names:
        if name in known:
            chosen.append(known[name])
        elif name in PLANNED:
            planned.append((name, f"planned: {PLANNED[name][1]}"))
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"unknown bench case(s) {', '.join(unknown)}; cases: "
                         f"{', '.join(list(known) + [n for n in PLANNED if n not in known])}")
    return chosen, planned
