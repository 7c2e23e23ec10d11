"""A Qdrant server test double: the subset of Qdrant's REST API that the `server` index adapter
(backend/retrieval/stores/server.py, through qdrant-client over HTTP) calls, served on 127.0.0.1 and backed by
qdrant-edge-py (the real engine: the same segments, filters, sparse IDF and fusion as a Qdrant server).

A TEST DOUBLE, NEVER A PRODUCTION COMPONENT: no Qdrant server installs here (not on PyPI, npm or Debian, no
Docker), and several processes writing one index need one, so tests use this. Production runs a real Qdrant
server or cluster (`index.kind: server`, `index.url`).

    with QdrantServerDouble(data_dir) as server:       # a thread of this process, on a free port
        store = ServerStore(server.url, None, "lorechat", hnsw_ef=128, timeout=5)

    with QdrantServerProcess(data_dir) as server:      # its own OS process (server.kill() is a crash)
        ...

    python -m tests.fakes.qdrant_server --data-dir DIR [--port N] [--api-key KEY]   # prints the URL, then serves

Checked against `qdrant_client.http.models` (the client's generated models of the REST API): every request body
is parsed by the model the client builds it from, strictly (extra fields forbidden and no coercion, "yes" is no
bool and "5" no integer, as the real server's serde parses), every
response is built from the model the client parses it into. A body the real server would reject is a 400 with
Qdrant's error shape (`{"status": {"error": "..."}, "time": ...}`), a missing collection a 404, an unknown route a
404, a known route with another method a 405. A request valid for Qdrant but outside this subset (a query by point
id, MMR, quantization, geo filters, ...) is a 400 that says the double does not implement it, never a silent
approximation.

Routes: GET / (version), /healthz, /livez, /readyz; GET /collections; GET, PUT, DELETE /collections/{name};
GET /collections/{name}/exists; PUT /collections/{name}/index; PUT /collections/{name}/points (upsert);
POST /collections/{name}/points/{delete,count,scroll,query}.

Storage: one Edge shard per collection under `data_dir/collections/{name}/shard`, the create request (vectors,
metadata, ...) beside it in `collection.json`; a double started again on the same folder serves what was written
(one double at a time per folder: Edge's WAL lock). Every operation on a collection holds that collection's lock,
so concurrent clients are serialised on the shard; writes are flushed before they are answered.

With `api_key`, every route except the version and health routes needs it in the `api-key` header (or
`Authorization: Bearer KEY`), as on a Qdrant server: a missing or wrong key is a 401.

Test hooks: `requests` (method, path, status of every request answered) and `fail_next(status, count, path=...)`
(the next matching requests answer `status` without touching the shard).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import qdrant_edge as qe
from pydantic import BaseModel, TypeAdapter, ValidationError
from qdrant_client.http import models as m

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS_DIR = "collections"
CONFIG_FILE = "collection.json"
SHARD_DIR = "shard"
# Qdrant's defaults where a request leaves them out.
DEFAULT_LIMIT = 10
DEFAULT_RRF_K = 2
_NAME = re.compile(r"^[^/\\\x00-\x1f<>:\"|?*]{1,255}$")
_POINTS_TO_UPSERT: TypeAdapter[Any] = TypeAdapter(m.PointInsertOperations)
_POINTS_SELECTOR: TypeAdapter[Any] = TypeAdapter(m.PointsSelector)
_UNAUTHENTICATED = {"/", "/healthz", "/livez", "/readyz"}


class ApiError(Exception):
    """Answered as Qdrant answers errors: the status code and {"status": {"error": message}, "time": ...}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _unsupported(what: str) -> ApiError:
    return ApiError(400, f"Bad request: {what} is not implemented by the Qdrant test double (tests/fakes)")


def _not_found(name: str) -> ApiError:
    return ApiError(404, f"Not found: Collection `{name}` doesn't exist!")


@dataclass(frozen=True, slots=True)
class Logged:
    method: str
    path: str
    status: int


@dataclass(slots=True)
class _Fault:
    status: int
    remaining: int
    path: str  # a substring of the request path; empty matches every route


class _Collection:
    def __init__(self, name: str, path: Path, config: m.CreateCollection, shard: qe.EdgeShard) -> None:
        self.name = name
        self.path = path
        self.config = config
        self.shard: qe.EdgeShard | None = shard
        self.lock = threading.Lock()
        self.operation_id = 0


# ---- the engine side: a Qdrant REST API over Edge shards -------------------------------------------------------


class QdrantEngine:
    """The REST API's semantics over one Edge shard per collection under `data_dir`; thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / COLLECTIONS_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self._collections: dict[str, _Collection] = {}
        self._registry = threading.Lock()

    def close(self) -> None:
        with self._registry:
            for collection in self._collections.values():
                with collection.lock:
                    if collection.shard is not None:
                        collection.shard.close()
                        collection.shard = None
            self._collections.clear()

    # ---- the registry -------------------------------------------------------------------------------------

    def _open(self, name: str) -> _Collection | None:
        """The collection if it exists (opening its shard on first use), else None. Holds the registry lock."""
        _check_name(name)
        with self._registry:
            collection = self._collections.get(name)
            if collection is not None:
                return collection
            path = self.root / name
            try:
                record = (path / CONFIG_FILE).read_text()
            except FileNotFoundError:
                return None
            config = m.CreateCollection.model_validate_json(record)
            shard = _engine_call(qe.EdgeShard.load, str(path / SHARD_DIR))
            collection = self._collections[name] = _Collection(name, path, config, shard)
            return collection

    @contextmanager
    def _locked(self, name: str) -> Iterator[_Collection]:
        collection = self._open(name)
        if collection is None:
            raise _not_found(name)
        with collection.lock:
            if collection.shard is None:  # deleted while this request waited for the lock
                raise _not_found(name)
            yield collection

    # ---- collections -------------------------------------------------------------------------------------

    def list_collections(self) -> m.CollectionsResponse:
        names = sorted(p.name for p in self.root.iterdir() if (p / CONFIG_FILE).exists())
        return m.CollectionsResponse(collections=[m.CollectionDescription(name=n) for n in names])

    def exists(self, name: str) -> m.CollectionExistence:
        return m.CollectionExistence(exists=self._open(name) is not None)

    def create(self, name: str, request: m.CreateCollection) -> bool:
        _check_name(name)
        config = _edge_config(request)
        with self._registry:
            path = self.root / name
            if name in self._collections or (path / CONFIG_FILE).exists():
                raise ApiError(409, f"Wrong input: Collection `{name}` already exists!")
            if path.exists():  # a create that died before its record was written
                shutil.rmtree(path)
            shard = _engine_call(qe.EdgeShard.create, str(path / SHARD_DIR), config)
            shard.flush()
            # Written after the shard exists: the record is what makes the collection visible.
            tmp = path / (CONFIG_FILE + ".tmp")
            tmp.write_text(request.model_dump_json(exclude_none=True, by_alias=True))
            os.replace(tmp, path / CONFIG_FILE)
            self._collections[name] = _Collection(name, path, request, shard)
        return True

    def delete_collection(self, name: str) -> bool:
        collection = self._open(name)
        if collection is None:
            return False
        with self._registry, collection.lock:
            if collection.shard is not None:
                collection.shard.close()
                collection.shard = None
            self._collections.pop(name, None)
            (collection.path / CONFIG_FILE).unlink(missing_ok=True)
            shutil.rmtree(collection.path, ignore_errors=True)
        return True

    def info(self, name: str) -> m.CollectionInfo:
        with self._locked(name) as collection:
            assert collection.shard is not None
            info = _engine_call(collection.shard.info)
            schema = {key: _index_info(value) for key, value in info.payload_schema.items()}
            config = collection.config
            return m.CollectionInfo(
                status=m.CollectionStatus.GREEN,
                optimizer_status=m.OptimizersStatusOneOf.OK,
                indexed_vectors_count=info.indexed_vectors_count,
                points_count=info.points_count,
                segments_count=info.segments_count,
                config=m.CollectionConfig(
                    params=m.CollectionParams(
                        vectors=config.vectors,
                        sparse_vectors=config.sparse_vectors,
                        shard_number=1,
                        replication_factor=1,
                        write_consistency_factor=1,
                        on_disk_payload=True,
                    ),
                    hnsw_config=m.HnswConfig(m=16, ef_construct=100, full_scan_threshold=10000),
                    optimizer_config=m.OptimizersConfig(
                        deleted_threshold=0.2,
                        vacuum_min_vector_number=1000,
                        default_segment_number=0,
                        flush_interval_sec=5,
                    ),
                    wal_config=m.WalConfig(wal_capacity_mb=32, wal_segments_ahead=0),
                    metadata=config.metadata,
                ),
                payload_schema=schema,
            )

    def create_index(self, name: str, request: m.CreateFieldIndex, *, wait: bool) -> m.UpdateResult:
        schema = _field_schema(request.field_schema)
        with self._locked(name) as collection:
            return self._update(collection, qe.UpdateOperation.create_field_index(request.field_name, schema), wait)

    # ---- points ------------------------------------------------------------------------------------------

    def upsert(self, name: str, request: m.PointsList | m.PointsBatch, *, wait: bool) -> m.UpdateResult:
        if request.shard_key is not None:
            raise _unsupported("shard_key")
        if isinstance(request, m.PointsBatch):
            points = _batch_points(request.batch)
        else:
            points = [_point(p.id, p.vector, p.payload) for p in request.points]
        condition = _filter(request.update_filter)
        mode = None if request.update_mode is None else _UPDATE_MODES[request.update_mode]
        with self._locked(name) as collection:
            return self._update(collection, qe.UpdateOperation.upsert_points(points, condition, mode), wait)

    def delete_points(self, name: str, request: m.PointIdsList | m.FilterSelector, *, wait: bool) -> m.UpdateResult:
        if request.shard_key is not None:
            raise _unsupported("shard_key")
        if isinstance(request, m.FilterSelector):
            operation = qe.UpdateOperation.delete_points_by_filter(_filter(request.filter))
        else:
            operation = qe.UpdateOperation.delete_points([_point_id(i) for i in request.points])
        with self._locked(name) as collection:
            return self._update(collection, operation, wait)

    def _update(self, collection: _Collection, operation: qe.UpdateOperation, wait: bool) -> m.UpdateResult:
        assert collection.shard is not None
        _engine_call(collection.shard.update, operation)
        _engine_call(collection.shard.flush)
        collection.operation_id += 1
        status = m.UpdateStatus.COMPLETED if wait else m.UpdateStatus.ACKNOWLEDGED
        return m.UpdateResult(operation_id=collection.operation_id, status=status)

    def count(self, name: str, request: m.CountRequest) -> m.CountResult:
        if request.shard_key is not None:
            raise _unsupported("shard_key")
        edge = qe.CountRequest(exact=True if request.exact is None else request.exact, filter=_filter(request.filter))
        with self._locked(name) as collection:
            assert collection.shard is not None
            return m.CountResult(count=_engine_call(collection.shard.count, edge))

    def scroll(self, name: str, request: m.ScrollRequest) -> m.ScrollResult:
        if request.shard_key is not None:
            raise _unsupported("shard_key")
        if request.order_by is not None:
            raise _unsupported("scroll order_by")
        limit = _limit(request.limit, "limit")
        edge = qe.ScrollRequest(
            offset=None if request.offset is None else _point_id(request.offset),
            limit=limit,
            filter=_filter(request.filter),
            with_payload=_with_payload(request.with_payload, default=True),
            with_vector=_with_vector(request.with_vector),
        )
        with self._locked(name) as collection:
            assert collection.shard is not None
            records, offset = _engine_call(collection.shard.scroll, edge)
        return m.ScrollResult(
            points=[m.Record(id=_rest_id(r.id), payload=r.payload, vector=_rest_vector(r.vector)) for r in records],
            next_page_offset=None if offset is None else _rest_id(offset),
        )

    def query(self, name: str, request: m.QueryRequest) -> m.QueryResponse:
        if request.shard_key is not None:
            raise _unsupported("shard_key")
        if request.lookup_from is not None:
            raise _unsupported("lookup_from")
        prefetches = _prefetches(request.prefetch)
        query = _query(request.query, request.using, fusion_allowed=bool(prefetches))
        edge = qe.QueryRequest(
            limit=_limit(request.limit, "limit"),
            offset=request.offset,
            query=query,
            prefetches=prefetches or None,
            with_vector=_with_vector(request.with_vector),
            with_payload=_with_payload(request.with_payload, default=False),
            filter=_filter(request.filter),
            score_threshold=request.score_threshold,
            params=_params(request.params),
        )
        with self._locked(name) as collection:
            assert collection.shard is not None
            points = _engine_call(collection.shard.query, edge)
        return m.QueryResponse(
            points=[
                m.ScoredPoint(
                    id=_rest_id(p.id),
                    version=p.version,
                    score=p.score,
                    payload=p.payload,
                    vector=_rest_vector(p.vector),
                    order_value=p.order_value,
                )
                for p in points
            ]
        )


# ---- REST models → Edge ---------------------------------------------------------------------------------------

_DISTANCES = {
    m.Distance.COSINE: qe.Distance.Cosine,
    m.Distance.EUCLID: qe.Distance.Euclid,
    m.Distance.DOT: qe.Distance.Dot,
    m.Distance.MANHATTAN: qe.Distance.Manhattan,
}
_MODIFIERS = {m.Modifier.NONE: getattr(qe.Modifier, "None"), m.Modifier.IDF: qe.Modifier.Idf}
_SCHEMA_TYPES = {
    m.PayloadSchemaType.KEYWORD: qe.PayloadSchemaType.Keyword,
    m.PayloadSchemaType.INTEGER: qe.PayloadSchemaType.Integer,
    m.PayloadSchemaType.FLOAT: qe.PayloadSchemaType.Float,
    m.PayloadSchemaType.GEO: qe.PayloadSchemaType.Geo,
    m.PayloadSchemaType.TEXT: qe.PayloadSchemaType.Text,
    m.PayloadSchemaType.BOOL: qe.PayloadSchemaType.Bool,
    m.PayloadSchemaType.DATETIME: qe.PayloadSchemaType.Datetime,
    m.PayloadSchemaType.UUID: qe.PayloadSchemaType.Uuid,
}
_REST_SCHEMA_TYPES = {str(edge): rest for rest, edge in _SCHEMA_TYPES.items()}
_UPDATE_MODES = {
    m.UpdateMode.UPSERT: qe.UpdateMode.Upsert,
    m.UpdateMode.INSERT_ONLY: qe.UpdateMode.InsertOnly,
    m.UpdateMode.UPDATE_ONLY: qe.UpdateMode.UpdateOnly,
}
# Collection settings that tune a server's storage and cluster but do not change what a query answers: accepted
# (and recorded); the rest of CreateCollection changes answers or rejects writes, and is refused as unimplemented.
_TUNING_FIELDS = {
    "vectors",
    "sparse_vectors",
    "metadata",
    "shard_number",
    "replication_factor",
    "write_consistency_factor",
    "on_disk_payload",
    "hnsw_config",
    "wal_config",
    "optimizers_config",
}


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ApiError(400, f"Validation error in path parameters: [collection_name: invalid name {name!r}]")


def _edge_config(request: m.CreateCollection) -> qe.EdgeConfig:
    extra = sorted(k for k in request.model_fields_set if getattr(request, k) is not None and k not in _TUNING_FIELDS)
    if extra:
        raise _unsupported(f"collection setting {', '.join(extra)}")
    vectors = request.vectors
    dense: dict[str, qe.EdgeVectorParams] = {}
    named = vectors if isinstance(vectors, dict) else ({} if vectors is None else {"": vectors})
    for vector_name, params in named.items():
        if params.quantization_config or params.datatype or params.multivector_config:
            raise _unsupported(f"vector {vector_name!r}'s quantization, datatype or multivector settings")
        dense[vector_name] = qe.EdgeVectorParams(size=params.size, distance=_DISTANCES[params.distance])
    sparse = {
        sparse_name: qe.EdgeSparseVectorParams(
            modifier=None if params.modifier is None else _MODIFIERS[params.modifier]
        )
        for sparse_name, params in (request.sparse_vectors or {}).items()
    }
    for vector_name, params in named.items():
        if params.size < 1:
            raise ApiError(400, f"Validation error in JSON body: [vectors.{vector_name}.size: must be 1 or larger]")
    return qe.EdgeConfig(vectors=dense, sparse_vectors=sparse)


def _field_schema(schema: Any) -> Any:
    if schema is None:
        raise ApiError(400, "Bad request: field_schema is required to create a payload index")
    if isinstance(schema, m.PayloadSchemaType):
        return _SCHEMA_TYPES[schema]
    if isinstance(schema, m.KeywordIndexParams):
        if schema.prefix or schema.nested:
            raise _unsupported("keyword index prefix/nested")
        return qe.KeywordIndexParams(is_tenant=schema.is_tenant, on_disk=schema.on_disk)
    if isinstance(schema, m.IntegerIndexParams):
        return qe.IntegerIndexParams(
            lookup=schema.lookup, range=schema.range, is_principal=schema.is_principal, on_disk=schema.on_disk
        )
    if isinstance(schema, m.FloatIndexParams):
        return qe.FloatIndexParams(is_principal=schema.is_principal, on_disk=schema.on_disk)
    if isinstance(schema, m.BoolIndexParams):
        return qe.BoolIndexParams(on_disk=schema.on_disk)
    if isinstance(schema, m.DatetimeIndexParams):
        return qe.DatetimeIndexParams(is_principal=schema.is_principal, on_disk=schema.on_disk)
    if isinstance(schema, m.UuidIndexParams):
        return qe.UuidIndexParams(is_tenant=schema.is_tenant, on_disk=schema.on_disk)
    raise _unsupported(f"payload index {type(schema).__name__}")


def _index_info(info: Any) -> m.PayloadIndexInfo:
    params = None
    if isinstance(info.params, qe.KeywordIndexParams):
        params = m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=info.params.is_tenant)
    return m.PayloadIndexInfo(data_type=_REST_SCHEMA_TYPES[str(info.data_type)], params=params, points=info.points)


def _point_id(value: Any) -> int | str:
    """An id as the real server parses it: an unsigned integer or a UUID (any other string is a 400)."""
    if isinstance(value, bool):
        raise ApiError(400, f"Format error in JSON body: value {value} is not a valid point ID")
    if isinstance(value, int):
        if value < 0:
            raise ApiError(400, f"Format error in JSON body: value {value} is not a valid point ID")
        return value
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ApiError(
            400, f"Format error in JSON body: value {value} is not a valid point ID, valid values are either an "
            "unsigned integer or a UUID"
        ) from None  # fmt: skip


def _rest_id(value: Any) -> int | str:
    return value if isinstance(value, int) else str(value)


def _vector(value: Any, name: str) -> Any:
    if isinstance(value, m.SparseVector):
        if len(value.indices) != len(value.values):
            raise ApiError(400, f"Validation error in JSON body: [{name}: indices and values must be the same length]")
        return qe.SparseVector(list(value.indices), list(value.values))
    if isinstance(value, list):
        return value
    raise _unsupported(f"vector {name!r} as {type(value).__name__} (inference)")


def _point(point_id: Any, vector: Any, payload: dict[str, Any] | None) -> qe.Point:
    if isinstance(vector, dict):
        vectors: Any = {name: _vector(value, name) for name, value in vector.items()}
    else:
        vectors = _vector(vector, "")
    return qe.Point(_point_id(point_id), vectors, payload)


def _batch_points(batch: m.Batch) -> list[qe.Point]:
    count = len(batch.ids)
    payloads = batch.payloads or [None] * count
    vectors = batch.vectors
    if isinstance(vectors, dict):
        per_point = [{name: values[i] for name, values in vectors.items()} for i in range(count)]
    else:
        per_point = list(vectors)
    if len(per_point) != count or len(payloads) != count:
        raise ApiError(400, "Validation error in JSON body: [batch: ids, vectors and payloads must be the same length]")
    return [_point(i, v, p) for i, v, p in zip(batch.ids, per_point, payloads, strict=True)]


def _conditions(value: Any) -> list[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [_condition(item) for item in items]


def _filter(value: m.Filter | None) -> qe.Filter | None:
    if value is None:
        return None
    min_should = None
    if value.min_should is not None:
        min_should = qe.MinShould(
            conditions=[_condition(c) for c in value.min_should.conditions], min_count=value.min_should.min_count
        )
    return qe.Filter(
        must=_conditions(value.must),
        should=_conditions(value.should),
        must_not=_conditions(value.must_not),
        min_should=min_should,
    )


def _condition(value: Any) -> Any:
    if isinstance(value, m.Filter):
        return _filter(value)
    if isinstance(value, m.FieldCondition):
        return _field_condition(value)
    if isinstance(value, m.HasIdCondition):
        return qe.HasIdCondition({_point_id(i) for i in value.has_id})
    if isinstance(value, m.IsEmptyCondition):
        return qe.IsEmptyCondition(value.is_empty.key)
    if isinstance(value, m.IsNullCondition):
        return qe.IsNullCondition(value.is_null.key)
    if isinstance(value, m.HasVectorCondition):
        return qe.HasVectorCondition(value.has_vector)
    if isinstance(value, m.NestedCondition):
        nested = _filter(value.nested.filter)
        assert nested is not None
        return qe.NestedCondition(value.nested.key, nested)
    raise _unsupported(f"filter condition {type(value).__name__}")


def _match(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, m.MatchValue):
        return qe.MatchValue(value.value)
    if isinstance(value, m.MatchAny):
        return qe.MatchAny(list(value.any))
    if isinstance(value, m.MatchExcept):
        return qe.MatchExcept(list(value.except_))
    if isinstance(value, m.MatchText):
        return qe.MatchText(value.text)
    if isinstance(value, m.MatchTextAny):
        return qe.MatchTextAny(value.text_any)
    if isinstance(value, m.MatchPhrase):
        return qe.MatchPhrase(value.phrase)
    if isinstance(value, m.MatchPrefix):
        return qe.MatchPrefix(value.prefix)
    if isinstance(value, m.MatchSubstring):
        return qe.MatchSubstring(value.substring)
    raise _unsupported(f"match {type(value).__name__}")


def _field_condition(value: m.FieldCondition) -> qe.FieldCondition:
    if value.geo_bounding_box or value.geo_radius or value.geo_polygon:
        raise _unsupported("geo conditions")
    given = [x for x in (value.match, value.range, value.values_count, value.is_empty, value.is_null) if x is not None]
    if not given:
        raise ApiError(400, f"Validation error in JSON body: [filter: at least one condition on {value.key!r}]")
    range_: Any = None
    if isinstance(value.range, m.Range):
        range_ = qe.RangeFloat(gte=value.range.gte, gt=value.range.gt, lte=value.range.lte, lt=value.range.lt)
    elif isinstance(value.range, m.DatetimeRange):
        iso = {k: None if v is None else v.isoformat() for k, v in value.range.model_dump().items()}
        range_ = qe.RangeDateTime(**iso)
    values_count = None
    if value.values_count is not None:
        c = value.values_count
        values_count = qe.ValuesCount(lt=c.lt, gt=c.gt, lte=c.lte, gte=c.gte)
    return qe.FieldCondition(
        value.key,
        match=_match(value.match),
        range=range_,
        values_count=values_count,
        is_empty=value.is_empty,
        is_null=value.is_null,
    )


def _params(value: m.SearchParams | None) -> qe.SearchParams | None:
    if value is None:
        return None
    if value.quantization is not None or value.acorn is not None or value.idf is not None:
        raise _unsupported("search params quantization/acorn/idf")
    return qe.SearchParams(hnsw_ef=value.hnsw_ef, exact=bool(value.exact), indexed_only=bool(value.indexed_only))


def _limit(value: int | None, name: str) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if value < 1:
        raise ApiError(400, f"Validation error in JSON body: [{name}: value {value} invalid, must be 1 or larger]")
    return value


def _with_payload(value: Any, *, default: bool) -> Any:
    if value is None:
        return default
    if isinstance(value, m.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(value.include))
    if isinstance(value, m.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(value.exclude))
    if isinstance(value, list):
        return qe.PayloadSelector.Include(list(value))
    return bool(value)


def _with_vector(value: Any) -> Any:
    return False if value is None else value


def _rest_vector(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {name: _rest_vector(v) for name, v in value.items()}
    if isinstance(value, qe.SparseVector):
        return m.SparseVector(indices=list(value.indices), values=[float(v) for v in value.values])
    return value


def _prefetches(value: m.Prefetch | list[m.Prefetch] | None) -> list[qe.Prefetch]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    edge = []
    for item in items:
        if item.lookup_from is not None:
            raise _unsupported("lookup_from")
        nested = _prefetches(item.prefetch)
        edge.append(
            qe.Prefetch(
                limit=_limit(item.limit, "prefetch.limit"),
                query=_query(item.query, item.using, fusion_allowed=bool(nested)),
                prefetches=nested or None,
                params=_params(item.params),
                filter=_filter(item.filter),
                score_threshold=item.score_threshold,
            )
        )
    return edge


def _query(value: Any, using: str | None, *, fusion_allowed: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, m.NearestQuery):
        if value.mmr is not None:
            raise _unsupported("MMR")
        return _query(value.nearest, using, fusion_allowed=False)
    if isinstance(value, (m.FusionQuery, m.RrfQuery)):
        if not fusion_allowed:
            raise ApiError(400, "Bad request: Fusion queries need prefetches")
        if isinstance(value, m.FusionQuery):
            if value.fusion == m.Fusion.DBSF:
                return qe.Fusion.Dbsf()
            return qe.Fusion.Rrf(k=DEFAULT_RRF_K)
        k = DEFAULT_RRF_K if value.rrf.k is None else value.rrf.k
        return qe.Fusion.Rrf(k=k, weights=value.rrf.weights)
    if isinstance(value, m.SparseVector) or (isinstance(value, list) and not isinstance(value, str)):
        return qe.Query.Nearest(_vector(value, using or ""), using=using or "")
    if isinstance(value, (int, str, uuid.UUID)):
        raise _unsupported("a query by point id")
    raise _unsupported(f"query {type(value).__name__}")


def _engine_call(function: Callable[..., Any], *args: Any) -> Any:
    """Edge raises bare Exceptions (and ValueErrors) carrying the engine's message; a server answers them as a
    400 "Wrong input" (what the caller sent does not fit the collection) unless the engine itself failed."""
    try:
        return function(*args)
    except ApiError:
        raise
    except Exception as exc:
        message = str(exc)
        if "WouldBlock" in message or "Service internal error" in message or isinstance(exc, OSError):
            raise ApiError(500, f"Service internal error: {message}") from exc
        raise ApiError(400, f"Wrong input: {message}") from exc


# ---- HTTP -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    name: str
    query: dict[str, str]
    body: bytes

    def parse(self, model: Any) -> Any:
        adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
        try:
            return adapter.validate_json(self.body or b"", strict=True)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()
            )
            raise ApiError(400, f"Format error in JSON body: {problems}") from None

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.query.get(key)
        if value is None:
            return default
        if value not in ("true", "false"):
            raise ApiError(400, f"Query deserialize error: {key}: provided string was not `true` or `false`")
        return value == "true"

    def check_params(self) -> None:
        """The query parameters the client sends with writes and reads, parsed as the server parses them."""
        if "ordering" in self.query and self.query["ordering"] not in {o.value for o in m.WriteOrdering}:
            raise ApiError(400, f"Query deserialize error: unknown ordering {self.query['ordering']!r}")
        if "timeout" in self.query and not self.query["timeout"].isdigit():
            raise ApiError(400, "Query deserialize error: timeout: invalid digit found in string")
        consistency = self.query.get("consistency")
        if consistency is not None and not consistency.isdigit():
            if consistency not in {c.value for c in m.ReadConsistencyType}:
                raise ApiError(400, f"Query deserialize error: unknown consistency {consistency!r}")


def _ok(result_model: type[BaseModel], result: Any, started: float) -> BaseModel:
    return result_model(status="ok", time=time.perf_counter() - started, result=result)


def _route_table() -> list[tuple[re.Pattern[str], dict[str, Callable[[QdrantEngine, Request, float], BaseModel]]]]:
    def version(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        major, minor = package_version("qdrant-client").split(".")[:2]
        return m.VersionInfo(title="qdrant - vector search engine (lorechat test double)", version=f"{major}.{minor}.0")

    def collections(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        return _ok(m.InlineResponse2006, engine.list_collections(), t)

    def get(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        return _ok(m.InlineResponse2007, engine.info(r.name), t)

    def create(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        r.check_params()
        return _ok(m.InlineResponse2001, engine.create(r.name, r.parse(m.CreateCollection)), t)

    def delete(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        r.check_params()
        return _ok(m.InlineResponse2001, engine.delete_collection(r.name), t)

    def exists(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        return _ok(m.InlineResponse2009, engine.exists(r.name), t)

    def index(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        r.check_params()
        result = engine.create_index(r.name, r.parse(m.CreateFieldIndex), wait=r.flag("wait"))
        return _ok(m.InlineResponse2008, result, t)

    def upsert(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        r.check_params()
        return _ok(m.InlineResponse2008, engine.upsert(r.name, r.parse(_POINTS_TO_UPSERT), wait=r.flag("wait")), t)

    def delete_points(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        r.check_params()
        result = engine.delete_points(r.name, r.parse(_POINTS_SELECTOR), wait=r.flag("wait"))
        return _ok(m.InlineResponse2008, result, t)

    def count(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        r.check_params()
        return _ok(m.InlineResponse20020, engine.count(r.name, r.parse(m.CountRequest)), t)

    def scroll(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        r.check_params()
        return _ok(m.InlineResponse20019, engine.scroll(r.name, r.parse(m.ScrollRequest)), t)

    def query(engine: QdrantEngine, r: Request, t: float) -> BaseModel:
        r.check_params()
        return _ok(m.InlineResponse20022, engine.query(r.name, r.parse(m.QueryRequest)), t)

    name = r"(?P<name>[^/]+)"
    return [
        (re.compile(r"^/$"), {"GET": version}),
        (re.compile(r"^/collections$"), {"GET": collections}),
        (re.compile(rf"^/collections/{name}$"), {"GET": get, "PUT": create, "DELETE": delete}),
        (re.compile(rf"^/collections/{name}/exists$"), {"GET": exists}),
        (re.compile(rf"^/collections/{name}/index$"), {"PUT": index}),
        (re.compile(rf"^/collections/{name}/points$"), {"PUT": upsert}),
        (re.compile(rf"^/collections/{name}/points/delete$"), {"POST": delete_points}),
        (re.compile(rf"^/collections/{name}/points/count$"), {"POST": count}),
        (re.compile(rf"^/collections/{name}/points/scroll$"), {"POST": scroll}),
        (re.compile(rf"^/collections/{name}/points/query$"), {"POST": query}),
    ]


_ROUTES = _route_table()


class QdrantServerDouble:
    """The double in a thread of this process (see the module docstring). `url` once started."""

    def __init__(self, data_dir: Path | str, *, api_key: str | None = None, port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.requests: list[Logged] = []
        self._port = port
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._engine: QdrantEngine | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the double is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, status: int = 503, count: int = 1, *, path: str = "") -> None:
        """The next `count` requests whose path contains `path` answer `status` (an outage, an overload)."""
        with self._lock:
            self._faults.append(_Fault(status, count, path))

    def start(self) -> QdrantServerDouble:
        self._engine = QdrantEngine(self.data_dir)
        server = _QuietServer(("127.0.0.1", self._port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._engine is not None:
            self._engine.close()
        self._server = self._thread = self._engine = None

    def __enter__(self) -> QdrantServerDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- request handling ------------------------------------------------------------------------------------

    def _authorised(self, headers: Any) -> tuple[int, str] | None:
        if self.api_key is None:
            return None
        given = headers.get("api-key")
        bearer = headers.get("Authorization", "")
        if given is None and bearer.startswith("Bearer "):
            given = bearer[len("Bearer ") :]
        if given is None:
            return 401, "Must provide an API key or an Authorization bearer token"
        if given != self.api_key:
            return 401, "Invalid API key or JWT"
        return None

    def _fault(self, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.path in path:
                    fault.remaining -= 1
                    return fault.status
            return None

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, bytes, str]:
        started = time.perf_counter()
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        status, payload, content_type = self._dispatch(method, path, parts.query, headers, body, started)
        with self._lock:
            self.requests.append(Logged(method, path, status))
        return status, payload, content_type

    def _dispatch(
        self, method: str, path: str, query: str, headers: Any, body: bytes, started: float
    ) -> tuple[int, bytes, str]:
        if method == "GET" and path in ("/healthz", "/livez", "/readyz"):
            return 200, b"healthz check passed", "text/plain"
        try:
            if path not in _UNAUTHENTICATED and (refused := self._authorised(headers)) is not None:
                raise ApiError(*refused)
            for pattern, methods in _ROUTES:
                found = pattern.match(path)
                if found is None:
                    continue
                handler = methods.get(method)
                if handler is None:
                    raise ApiError(405, f"Method {method} is not allowed on {path}")
                if (status := self._fault(path)) is not None:
                    raise ApiError(status, f"Service unavailable (a fault the test scripted: {status})")
                params = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
                name = unquote(found.groupdict().get("name") or "")
                assert self._engine is not None
                model = handler(self._engine, Request(name, params, body), started)
                return 200, model.model_dump_json(by_alias=True, exclude_none=True).encode(), "application/json"
            raise ApiError(404, f"Not found: no route {method} {path}")
        except ApiError as exc:
            error = m.ErrorResponse(status=m.ErrorResponseStatus(error=exc.message), time=time.perf_counter() - started)
            return exc.status, error.model_dump_json(exclude_none=True).encode(), "application/json"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timeout, a closed keep-alive connection) is not news."""


def _handler(double: QdrantServerDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                status, payload, content_type = double.handle(self.command, self.path, self.headers, body)
            except Exception as exc:  # a bug in the double: answer it as the server's internal error
                error = m.ErrorResponse(status=m.ErrorResponseStatus(error=f"Service internal error: {exc!r}"))
                status, payload, content_type = 500, error.model_dump_json().encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

    return Handler


# ---- in its own process -------------------------------------------------------------------------------------


class QdrantServerProcess:
    """The double as its own OS process (`python -m tests.fakes.qdrant_server`): for tests that kill or restart
    the index server, or keep it out of the test process. Same `url` / `data_dir` interface."""

    def __init__(self, data_dir: Path | str, *, api_key: str | None = None, port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self._port = port
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> QdrantServerProcess:
        command = [sys.executable, "-m", "tests.fakes.qdrant_server", "--data-dir", str(self.data_dir)]
        command += ["--port", str(self._port)]
        env = dict(os.environ)
        if self.api_key is not None:
            env["QDRANT_DOUBLE_API_KEY"] = self.api_key  # not on the command line, where `ps` shows it
        self._process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()  # its URL once it listens; "" if it died first
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the Qdrant double did not start (it printed {line!r})")
        self.url = line
        return self

    def stop(self) -> None:
        """SIGTERM: the double closes its shards and exits."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: a crash (what was answered is in the shard's WAL)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self.stop()

    def __enter__(self) -> QdrantServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The Qdrant server test double (tests only, never production).")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=os.environ.get("QDRANT_DOUBLE_API_KEY"))
    args = parser.parse_args(argv)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    with QdrantServerDouble(args.data_dir, api_key=args.api_key, port=args.port) as server:
        print(server.url, flush=True)
        stopping.wait()


if __name__ == "__main__":
    main()
