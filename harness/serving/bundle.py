"""The model bundle: everything the service needs, in one folder with a manifest.

The pipeline's serving stage writes it (``runs/bundles/<dataset>-<preset>/``); the service loads
it once at start-up::

    from harness.serving.bundle import load_bundle, write_bundle
    bundle = load_bundle("runs/bundles/ml-100k-laptop")          # refuses a mismatched bundle
    bundle.retriever, bundle.index, bundle.ranker, bundle.features  # models come back in TRAIN mode:
                                                                    # putting them in eval is the server's job

Files (every one listed in ``manifest.json`` with its SHA-256):

=======================  ==============================================================================
``manifest.json``        format and version, dataset name/preset/fingerprint, models and their build
                         settings, serving settings, library versions, file checksums
``retriever.pt``         the two-tower model's ``state_dict`` (user tower and item tower; session 03)
``item_embeddings.pt``   float32 (n_items + 1, d): the item tower's output per id, row 0 zeros
``index.faiss``          a FAISS index over items 1..n_items built by session 06 (label r = item r + 1)
``ranker.pt``            the DLRM's ``state_dict`` (session 07); a ranker with extra modules (session 11's
                         text tower...) is stored whole (``ranker_module.pt``), since only its own code
                         knows how to build it
``features.pkl``         the ranker's :class:`~harness.pipeline.features.FeatureBuilder`: its spec (the
                         vocabularies and statistics the ranker was trained with) and its state at
                         serving time (histories and counts up to the test split)
``catalog.npz``          titles, item categories, popularity (interactions per item), the cold items (no
                         interaction before the serving split: text is their only evidence), and every
                         known user's history (flat ids + offsets)
``text_vectors.pt``      optional, float32 (n_items + 1, t): session 11's text vectors of the items
=======================  ==============================================================================

**Model serialisation.** State dicts plus the code that builds the modules (the session notebooks,
through :func:`harness.upstream`), not pickled modules: a state dict survives a refactoring of the
class, a pickle does not. State dicts load with ``weights_only=True`` (no code runs on load);
``features.pkl`` (and a whole-module ranker) is a pickle, so a bundle is trusted data: load only
bundles your own pipeline wrote.

**Checks on load** (:class:`BundleError`, with what to do next): the format version; the torch and
FAISS versions it was written with (major.minor; ``allow_version_mismatch=True`` overrides); each
file's checksum; the dataset fingerprint of the manifest, of the feature builder and, when given,
the one the caller expects; the shapes of the embeddings and the index against the catalog size.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..paths import display_path, runs_dir

FORMAT = "recsys-workbook-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TEXT_TABLE_MAX = 20_000_000  # entries of the item x cold-item cosine table kept in memory (else FAISS per request)

# Serving defaults (the setting: retrieve the top 100, rerank, answer k <= 100).
DEFAULT_SERVING = {"n_candidates": 100, "n_text_candidates": 10, "max_k": 100, "max_history": 256,
                   "max_body_bytes": 16_384}


class BundleError(Exception):
    """A bundle that cannot be served: missing, corrupt, or built for other data or library versions."""


def bundle_dir(dataset: str, preset: str, impl: str = "solutions") -> Path:
    """Where the pipeline writes the bundle of a run: ``runs/bundles/<dataset>-<preset>[-sessions]``."""
    return runs_dir() / "bundles" / (f"{dataset}-{preset}" + ("" if impl == "solutions" else f"-{impl}"))


@dataclass
class Bundle:
    """A loaded bundle. Models come back as built: in training mode, with gradients on."""

    path: Path
    manifest: dict
    retriever: nn.Module  # session 03's TwoTower: ``retriever.user_tower(history, mask) -> (B, d)``
    item_embeddings: torch.Tensor  # float32 (n_items + 1, d), row 0 zeros
    index: Any  # faiss.Index over items 1..n_items, label r = item r + 1
    ranker: nn.Module  # session 07's DLRM: ``ranker(batch) -> (B,)`` logits
    features: Any  # FeatureBuilder: ``features.batch(users, items, histories=...)``
    titles: np.ndarray  # object (n_items + 1,), "" at 0
    popularity: np.ndarray  # int64 (n_items + 1,): interactions per item before the serving split
    cold: np.ndarray  # bool (n_items + 1,): no interaction before the serving split
    history_items: np.ndarray  # int64, every known user's history, user by user, in time order
    history_offsets: np.ndarray  # int64 (n_users + 2,): user u's items are history_items[o[u]:o[u + 1]]
    text_vectors: torch.Tensor | None = None  # float32 (n_items + 1, t), L2-normalised, row 0 zeros
    text_index: Any = None  # faiss.IndexFlatIP over the cold items' text vectors
    text_ids: np.ndarray | None = None  # int64: item id of each row of text_index
    text_table: torch.Tensor | None = None  # float32 (n_items + 1, n_cold): cosines with the cold items (few of them)
    _popular: np.ndarray | None = field(default=None, repr=False)

    # --- sizes and settings -------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return int(self.manifest["dataset"]["n_users"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["dataset"]["n_items"])

    @property
    def max_len(self) -> int:
        """History window of the retriever's user tower (the last ``max_len`` items)."""
        return int(self.manifest["retriever"]["max_len"])

    @property
    def serving(self) -> dict:
        return {**DEFAULT_SERVING, **self.manifest.get("serving", {})}

    @property
    def n_candidates(self) -> int:
        return int(self.serving["n_candidates"])

    @property
    def n_text_candidates(self) -> int:
        return int(self.serving["n_text_candidates"]) if self.text_index is not None else 0

    @property
    def bundle_id(self) -> str:
        return str(self.manifest["bundle_id"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["dataset"]["fingerprint"])

    def models(self) -> list[nn.Module]:
        """Every torch module the request path runs (what start-up puts in eval mode)."""
        return [self.retriever, self.ranker]

    # --- lookups --------------------------------------------------------------------------------
    def knows_user(self, user_id: int) -> bool:
        return 1 <= user_id <= self.n_users and self.history_offsets[user_id + 1] > self.history_offsets[user_id]

    def user_history(self, user_id: int) -> list[int]:
        """The known user's item ids before the serving split, most recent last (empty if unknown)."""
        if not 1 <= user_id <= self.n_users:
            return []
        start, stop = self.history_offsets[user_id], self.history_offsets[user_id + 1]
        return self.history_items[start:stop].tolist()

    @property
    def popular(self) -> np.ndarray:
        """Item ids by popularity, most popular first (ties: lower id first); never 0."""
        if self._popular is None:
            order = np.argsort(-self.popularity[1:], kind="stable") + 1
            self._popular = order.astype(np.int64)
        return self._popular

    def summary(self) -> dict:
        """What ``/health`` and the logs say about the bundle."""
        m = self.manifest
        return {"bundle_id": self.bundle_id, "dataset": m["dataset"]["name"], "preset": m["dataset"].get("preset"),
                "fingerprint": self.fingerprint, "n_users": self.n_users, "n_items": self.n_items,
                "retriever": m["retriever"]["name"], "ranker": m["ranker"]["name"],
                "text_path": m["text"]["source"] if m.get("text") else None,
                "cold_items": int(self.cold[1:].sum()), "n_candidates": self.n_candidates,
                "created_at": m.get("created_at")}


# --------------------------------------------------------------------------------------------- writing

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict:
    import faiss

    from .. import __version__

    return {"torch": torch.__version__, "faiss": faiss.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "harness": __version__}


def _state_dict(module: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def write_bundle(path: str | Path, *, dataset, retriever: nn.Module, retriever_info: Mapping[str, Any],
                 ranker: nn.Module, ranker_info: Mapping[str, Any], features, upto: str = "test",
                 text_vectors: torch.Tensor | None = None, text_source: str | None = None,
                 cold: np.ndarray | None = None, serving: Mapping[str, Any] | None = None,
                 impl: str = "solutions", preset: str | None = None, notes: Sequence[str] = (),
                 key: str | None = None) -> Path:
    """Write a bundle folder (atomically: a half-written bundle is never left at ``path``).

    Args:
        dataset: the :class:`~harness.data.RecDataset` the models were trained on.
        retriever: session 03's ``TwoTower``; ``retriever_info``: ``name`` (e.g. "two-tower transformer"),
            ``max_len`` (the history window) and ``build``: the keyword arguments of session 03's
            ``build_two_tower`` besides the catalog (``tower``, ``dim``, ``category_dim``, ``dropout``,
            ``layers``, ``heads``).
        ranker: session 07's ``DLRM``; ``ranker_info``: ``name``, ``build`` (``dim``, ``bottom``, ``top``) and
            an optional ``note`` (how it was trained).
        features: the ``FeatureBuilder`` the ranker was trained with; stored with its state moved to
            ``upto`` (``features.at(dataset, upto)``): serving sees the same histories as offline
            evaluation of that split.
        text_vectors: optional float (n_items + 1, t) text vectors (session 11); ``text_source`` names them.
        cold: optional bool (n_items + 1,): items to serve through the text path; default: items with no
            interaction before ``upto``.
        serving: overrides of :data:`DEFAULT_SERVING`.
        key: an identifier of what the bundle was written from (the pipeline compares it to skip rewriting).
    """
    import faiss

    from ..autograder.loader import upstream

    path = Path(path)
    n_items, n_users = dataset.n_items, dataset.n_users
    fingerprint = dataset.meta.get("fingerprint")
    serving = {**DEFAULT_SERVING, **(serving or {})}
    if serving["max_k"] > serving["n_candidates"] + serving["n_text_candidates"]:
        raise ValueError("max_k must not exceed the number of candidates the ranker sees")
    build = dict(retriever_info["build"])
    codes, category_names = dataset.category_codes()

    was = retriever.training
    retriever.eval()
    try:
        with torch.no_grad():
            item_emb = retriever.item_tower(torch.arange(n_items + 1, device=_device_of(retriever))).float().cpu()
    finally:
        retriever.train(was)
    item_emb[0] = 0.0
    index = upstream(6).build_flat_index(item_emb, use_gpu=False)
    if index.ntotal != n_items:
        raise BundleError(f"session 06's build_flat_index returned an index of {index.ntotal} items, "
                          f"expected {n_items}")

    serving_features = features.at(dataset, upto)
    popularity = dataset.item_counts(upto).astype(np.int64)
    if cold is None:
        cold = popularity == 0
    cold = np.asarray(cold, dtype=bool).copy()
    cold[0] = False
    frame = dataset.history(upto)
    flat = frame["item_id"].to_numpy(np.int64)
    offsets = np.searchsorted(frame["user_id"].to_numpy(), np.arange(n_users + 2)).astype(np.int64)

    # A plain DLRM is stored as a state dict; anything else (extra modules, a wrapper) as a whole module.
    whole_ranker = not (hasattr(ranker, "spec") and hasattr(ranker, "extra") and len(ranker.extra) == 0
                        and type(ranker).__name__ == "DLRM")

    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=parent))
    try:
        torch.save(_state_dict(retriever), tmp / "retriever.pt")
        torch.save(item_emb.contiguous(), tmp / "item_embeddings.pt")
        faiss.write_index(index, str(tmp / "index.faiss"))
        if whole_ranker:
            import copy

            torch.save(copy.deepcopy(ranker).cpu(), tmp / "ranker_module.pt")  # never move the caller's model
        else:
            torch.save(_state_dict(ranker), tmp / "ranker.pt")
        with open(tmp / "features.pkl", "wb") as f:
            pickle.dump(serving_features, f, protocol=pickle.HIGHEST_PROTOCOL)
        np.savez(tmp / "catalog.npz", titles=np.asarray(dataset.item_titles, dtype=str),
                 item_categories=codes.astype(np.int64), popularity=popularity, cold=cold,
                 history_items=flat, history_offsets=offsets)
        text = None
        if text_vectors is not None:
            tv = torch.as_tensor(text_vectors, dtype=torch.float32).detach().cpu()
            if tv.shape[0] != n_items + 1:
                raise ValueError(f"text_vectors must have n_items + 1 = {n_items + 1} rows, got {tuple(tv.shape)}")
            tv = torch.nn.functional.normalize(tv, dim=1)
            tv[0] = 0.0
            torch.save(tv.contiguous(), tmp / "text_vectors.pt")
            text = {"source": text_source or "text vectors", "dim": int(tv.shape[1])}
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        bundle_id = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "bundle_id": bundle_id,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "impl": impl,
            "dataset": {"name": dataset.name, "preset": preset, "fingerprint": fingerprint,
                        "n_users": n_users, "n_items": n_items, "upto": upto},
            "retriever": {"name": retriever_info["name"], "max_len": int(retriever_info["max_len"]),
                          "build": build, "n_categories": len(category_names), "dim": int(item_emb.shape[1]),
                          "index": {"kind": type(index).__name__, "labels": "item id = label + 1"}},
            "ranker": {"name": ranker_info["name"], "stored": "module" if whole_ranker else "state_dict",
                       "build": dict(ranker_info.get("build", {})), "note": ranker_info.get("note", ""),
                       "features": serving_features.spec.to_dict(),
                       "extra_dense": list(getattr(serving_features, "_extra_dense", ()))},
            "text": text, "serving": serving, "versions": library_versions(), "files": files,
            "notes": list(notes), "key": key,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a server running as another user (a container) reads it
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


class RetrievalOrder(nn.Module):
    """A stand-in ranker for a bundle without a trained DLRM: the retriever's own score, unchanged.

    It reads the ``retrieval_score`` dense column of the ranker's features, so "reranking" keeps the
    retriever's order. The serving stage uses it, and says so, when the ranking stage did not run.
    """

    def __init__(self, spec, column: str = "retrieval_score"):
        super().__init__()
        self.spec = spec
        self.column = list(spec.dense).index(column)
        self.register_buffer("anchor", torch.zeros(1))  # a tensor, so that .to(device) has something to move

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return batch["dense"][:, self.column].float() + self.anchor


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    if p is None:
        p = next(module.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an older bundle there is removed only once the new one is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------- loading

def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        hint = ("write one with `python -m harness pipeline` (its serving stage), or pass --bundle with the "
                "folder of an existing bundle")
        what = "does not exist" if not path.exists() else f"has no {MANIFEST}"
        raise BundleError(f"no model bundle at {display_path(path)}: the folder {what}; {hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"{display_path(manifest_path)} is not valid JSON ({err}); write the bundle again") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{display_path(path)} is not a workbook model bundle (format {manifest.get('format')!r})")
    return manifest


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def check_manifest(manifest: dict, path: Path, *, expect_fingerprint: str | None = None,
                   allow_version_mismatch: bool = False) -> None:
    """Raise :class:`BundleError` if the bundle cannot be served here (see the module docstring)."""
    rebuild = ("write it again with `python -m harness pipeline` (its serving-bundle stage; `--stages "
               "two-tower-transformer dlrm serving-bundle` for just what the bundle needs)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{display_path(path)} has bundle format version {manifest.get('format_version')}, "
                          f"this harness reads version {FORMAT_VERSION}: {rebuild}")
    if not allow_version_mismatch:
        here = library_versions()
        for lib in ("torch", "faiss"):
            wrote = manifest.get("versions", {}).get(lib, "?")
            if _major_minor(wrote) != _major_minor(here[lib]):
                raise BundleError(f"{display_path(path)} was written with {lib} {wrote}, this process has {lib} "
                                  f"{here[lib]}: {rebuild} here, or pass allow_version_mismatch=True "
                                  "(--allow-version-mismatch) if you know the formats agree")
    if expect_fingerprint is not None and manifest["dataset"].get("fingerprint") != expect_fingerprint:
        raise BundleError(f"{display_path(path)} was built from dataset {manifest['dataset']['name']!r} with "
                          f"fingerprint {manifest['dataset'].get('fingerprint')}, but the data here has fingerprint "
                          f"{expect_fingerprint}: the item and user ids may mean other things; {rebuild}")
    for name, digest in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{display_path(path)} lists {name} but the file is missing: {rebuild}")
        if _sha256(file) != digest:
            raise BundleError(f"{display_path(file)} changed since the bundle was written (checksum mismatch): "
                              f"{rebuild}")


def load_bundle(path: str | Path, *, expect_fingerprint: str | None = None, allow_version_mismatch: bool = False,
                device: str | torch.device = "cpu") -> Bundle:
    """Read and check a bundle; the models are rebuilt with the sessions' code (:func:`harness.upstream`).

    The modules come back as ``nn.Module`` always does after construction: in training mode, with
    ``requires_grad=True`` parameters. A service puts them in eval mode and runs them without autograd.
    """
    import faiss

    from ..autograder.loader import upstream

    path = Path(path)
    manifest = read_manifest(path)
    check_manifest(manifest, path, expect_fingerprint=expect_fingerprint,
                   allow_version_mismatch=allow_version_mismatch)
    ds_info, r_info, k_info = manifest["dataset"], manifest["retriever"], manifest["ranker"]
    n_items, n_users = int(ds_info["n_items"]), int(ds_info["n_users"])
    catalog = np.load(path / "catalog.npz", allow_pickle=False)

    build = dict(r_info["build"])
    retriever = upstream(3).build_two_tower(n_items, torch.from_numpy(catalog["item_categories"]),
                                            int(r_info["n_categories"]), **build)
    _load_state(retriever, torch.load(path / "retriever.pt", map_location="cpu", weights_only=True),
                "retriever", path)
    item_emb = torch.load(path / "item_embeddings.pt", map_location="cpu", weights_only=True)
    index = faiss.read_index(str(path / "index.faiss"))

    with open(path / "features.pkl", "rb") as f:
        features = pickle.load(f)
    if ds_info.get("fingerprint") is not None and getattr(features, "fingerprint", None) not in (None, ds_info["fingerprint"]):
        raise BundleError(f"{display_path(path)}: the feature builder was fit on data with fingerprint "
                          f"{features.fingerprint}, the manifest says {ds_info['fingerprint']}: the bundle is "
                          "inconsistent; write it again")
    if k_info.get("stored") == "module":
        ranker = torch.load(path / "ranker_module.pt", map_location="cpu", weights_only=False)
    else:
        from ..pipeline.features import FeatureSpec

        spec = FeatureSpec.from_dict(k_info["features"])
        b = k_info["build"]
        ranker = upstream(7).DLRM(spec, dim=int(b["dim"]), bottom=tuple(b["bottom"]), top=tuple(b["top"]))
        _load_state(ranker, torch.load(path / "ranker.pt", map_location="cpu", weights_only=True), "ranker", path)

    problems = []
    if tuple(item_emb.shape) != (n_items + 1, int(r_info["dim"])):
        problems.append(f"item_embeddings.pt has shape {tuple(item_emb.shape)}, expected ({n_items + 1}, {r_info['dim']})")
    if index.ntotal != n_items:
        problems.append(f"index.faiss holds {index.ntotal} vectors for {n_items} items")
    if len(catalog["history_offsets"]) != n_users + 2:
        problems.append("catalog.npz's user histories do not match the number of users")
    if (features.n_items, features.n_users) != (n_items, n_users):
        problems.append("the feature builder's id ranges differ from the manifest's")
    if problems:
        raise BundleError(f"{display_path(path)} is inconsistent: " + "; ".join(problems) + "; write it again")

    text_vectors = text_index = text_ids = text_table = None
    cold = catalog["cold"].astype(bool)
    if manifest.get("text"):
        text_vectors = torch.load(path / "text_vectors.pt", map_location="cpu", weights_only=True)
        text_ids = np.nonzero(cold)[0].astype(np.int64)
        if len(text_ids):
            text_index = faiss.IndexFlatIP(text_vectors.shape[1])
            text_index.add(np.ascontiguousarray(text_vectors[text_ids].numpy(), dtype=np.float32))
            if (n_items + 1) * len(text_ids) <= TEXT_TABLE_MAX:
                text_table = (text_vectors @ text_vectors[torch.from_numpy(text_ids)].T).contiguous()
    device = torch.device(device)
    return Bundle(path=path, manifest=manifest, retriever=retriever.to(device), item_embeddings=item_emb,
                  index=index, ranker=ranker.to(device), features=features, titles=catalog["titles"].astype(object),
                  popularity=catalog["popularity"].astype(np.int64), cold=cold,
                  history_items=catalog["history_items"].astype(np.int64),
                  history_offsets=catalog["history_offsets"].astype(np.int64), text_vectors=text_vectors,
                  text_index=text_index, text_ids=text_ids, text_table=text_table)


def load_for_inference(path: str | Path, **kwargs) -> Bundle:
    """``load_bundle``, then every model in eval mode without gradients: the bundle as a server holds it
    (what session 14's ``lifespan`` does; the tests and the benchmark use this one)."""
    bundle = load_bundle(path, **kwargs)
    for model in bundle.models():
        model.eval().requires_grad_(False)
    return bundle


def _load_state(module: nn.Module, state: dict, what: str, path: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).split("\n")[0:3]
        raise BundleError(f"{display_path(path)}: the {what}'s weights do not fit the {what} the sessions' code "
                          f"builds ({' '.join(s.strip() for s in first)}); was it written by other code? Write the "
                          "bundle again") from None


__all__ = ["Bundle", "BundleError", "DEFAULT_SERVING", "RetrievalOrder", "bundle_dir", "check_manifest", "load_bundle",
           "load_for_inference", "read_manifest", "write_bundle"]
