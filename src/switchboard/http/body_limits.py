"""One validation policy for what a client sends: JSON bodies, query strings and header values.

Every API route is a ``CheckedRoute``. Before FastAPI validates anything, its handler parses a
JSON body once (FastAPI then reads that parse, nothing parses the body again; a large body is
parsed off the event loop) and refuses, in the API's error format:

- a body over ``Settings.max_request_bytes`` (``max_upload_bytes`` for a multipart upload):
  413 ``request_too_large``;
- nesting deeper than ``MAX_JSON_DEPTH``: 400 ``nesting_too_deep``, ``param`` where;
- an integer outside 64 bits, ``[-2**63, 2**64 - 1]`` (signed or unsigned, what every layer
  behind can store and serialize): 400 ``integer_out_of_range``, ``param`` where;
- a query parameter holding an integer outside ``[-2**63, 2**63 - 1]``: 400
  ``integer_out_of_range``, ``param`` its name.

Lone surrogate escapes (``"\\ud800"`` without a partner, valid JSON but not encodable as UTF-8)
become ``?``, so tokenizers, ``orjson`` and database drivers can take every string.

Header values built from client text go through ``header_list``, which percent-encodes what a
header cannot carry, so a response can always be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from switchboard.http.errors import APIError
from switchboard.http.openapi import error_responses
from switchboard.settings import Settings

MAX_JSON_DEPTH = 64  # arrays and objects inside one another; the body itself is level 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
OFF_LOOP_BYTES = 256 * 1024  # bodies from this size are parsed in a worker thread

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_INTEGER = re.compile(r"[+-]?[0-9]+")
# RFC 9110 token characters, less "," (the list separator) and "%" (the escape).
_HEADER_SAFE = "!#$&'*+-.^_`|~"
_LONGEST_SAFE_INT = len(str(INT64_MAX)) - 1  # digits that always fit, sign apart


class _OutOfRange(ValueError):
    """An integer literal past 64 bits, met while parsing (its place is found afterwards)."""


class _Unbounded:
    """Stands for an integer literal past 64 bits while its place is looked for."""

    def __init__(self, text: str) -> None:
        self.text = text


class _TooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__()
        self.path: list[str | int] = []


class _IntegerAt(ValueError):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.path: list[str | int] = []


def _fits(text: str) -> bool:
    # Short literals always fit; long ones are compared (without int() on thousands of digits).
    return len(text) <= _LONGEST_SAFE_INT or (
        len(text) <= _LONGEST_SAFE_INT + 3 and INT64_MIN <= int(text) <= UINT64_MAX)


def _bounded_int(text: str) -> int:
    if not _fits(text):
        raise _OutOfRange(text)
    return int(text)


def _marked_int(text: str) -> int | _Unbounded:
    return int(text) if _fits(text) else _Unbounded(text)


def parse_json(body: bytes) -> Any:
    """The body's JSON value under the policy; ``APIError`` (400) for what the policy refuses,
    ``ValueError`` for a body that is not JSON (left to the framework's own 422)."""
    try:
        value = json.loads(body, parse_int=_bounded_int, object_hook=_same)
    except _OutOfRange:
        _locate(json.loads(body, parse_int=_marked_int), 1, check_ints=True)  # names the place
        raise  # pragma: no cover - _locate found what the parse found
    except RecursionError as exc:
        raise _too_deep(None) from exc
    if _SURROGATE_ESCAPE.search(body) is not None:
        return _locate(value, 1, check_ints=False, clean=True)
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _too_deep_at(value, 1):
        _locate(value, 1, check_ints=False)  # raises, naming the place
    return value


def _same(value: dict[str, Any]) -> dict[str, Any]:
    """A Python call per object, so a parse in a worker thread lets the event loop run (the C
    parser alone holds the interpreter lock until it is done)."""
    return value


def _too_deep_at(value: Any, depth: int) -> bool:
    """Whether ``value`` (at ``depth``) holds containers nested past ``MAX_JSON_DEPTH``."""
    if depth > MAX_JSON_DEPTH:
        return True
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if (kind is dict or kind is list) and _too_deep_at(item, depth + 1):
            return True
    return False


def _locate(value: Any, depth: int, check_ints: bool, clean: bool = False) -> Any:
    """``value`` with lone surrogates replaced (``clean``), after checking its depth (and, with
    ``check_ints``, its integers); a refusal names the place in ``param``."""
    try:
        return _walk(value, depth, check_ints, clean)
    except _TooDeep as exc:  # named by its top-level field (the full path is 64 levels long)
        raise _too_deep(_param(exc.path[:1])) from None
    except _IntegerAt as exc:
        shown = exc.text if len(exc.text) <= 40 else exc.text[:20] + "…"
        raise APIError(400, f"{_param(exc.path) or 'the body'}: the integer {shown} is "
                       "outside 64 bits (send it as a string)", param=_param(exc.path),
                       code="integer_out_of_range") from None


def _walk(value: Any, depth: int, check_ints: bool, clean: bool) -> Any:
    kind = type(value)
    if kind is dict or kind is list:
        if depth > MAX_JSON_DEPTH:
            raise _TooDeep
        items = value.items() if kind is dict else enumerate(value)
        for key, item in items:
            try:
                if type(item) in (dict, list) or (check_ints and type(item) is _Unbounded) or (
                        clean and type(item) is str):
                    new = _walk(item, depth + 1, check_ints, clean)
                    if new is not item:
                        value[key] = new
            except (_TooDeep, _IntegerAt) as exc:
                exc.path.insert(0, key)
                raise
        if clean and kind is dict and any(_LONE_SURROGATE.search(k) for k in value):
            return {_LONE_SURROGATE.sub("?", k): v for k, v in value.items()}
        return value
    if kind is _Unbounded:
        raise _IntegerAt(value.text)
    if kind is str and _LONE_SURROGATE.search(value):
        return _LONE_SURROGATE.sub("?", value)
    return value


def _param(path: list[str | int]) -> str | None:
    if not path:
        return None
    head, *rest = path
    return str(head) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)


def _too_deep(param: str | None) -> APIError:
    where = f"{param}: " if param else ""
    return APIError(400, f"{where}JSON nested deeper than {MAX_JSON_DEPTH} levels",
                    param=param, code="nesting_too_deep")


def too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than {limit} bytes",
                    code="request_too_large")


def check_query(request: Request, names: frozenset[str] | None = None) -> None:
    """Integers in the query string fit a signed 64-bit column (``OFFSET``, ``LIMIT``);
    with ``names``, only the parameters the route reads (it ignores the others)."""
    for name, text in request.query_params.multi_items():
        if names is not None and name not in names:
            continue
        digits = text.strip()
        if len(digits) > _LONGEST_SAFE_INT and _INTEGER.fullmatch(digits) and (
                len(digits) > 4000 or not INT64_MIN <= int(digits) <= INT64_MAX):
            raise APIError(400, f"{name}: the integer is outside 64 bits", param=name,
                           code="integer_out_of_range")


def header_list(names: list[str]) -> str:
    """A comma-separated header value naming client-chosen ``names``: anything outside the
    header token characters (non-Latin-1, CR, LF, commas, spaces) is percent-encoded as UTF-8."""
    return ",".join(quote(name, safe=_HEADER_SAFE) for name in names)


def _is_json(request: Request) -> bool:
    """The same test FastAPI uses before it reads a body as JSON."""
    kind = request.headers.get("content-type")
    if kind is None:
        return True
    main = kind.split(";", 1)[0].strip().lower()
    return main == "application/json" or (main.startswith("application/") and
                                          main.endswith("+json"))


def query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route (and its dependencies) reads."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= query_names(sub)
    return frozenset(names)


class CheckedRequest(Request):
    """A request whose body is size-limited and whose JSON is parsed by ``parse_json``, once."""

    _checked: Any

    def _limit(self) -> int:
        """``max_upload_bytes`` for a multipart body (document uploads), else
        ``max_request_bytes``."""
        name = ("max_upload_bytes" if self.headers.get("content-type", "").lower()
                .startswith("multipart/") else "max_request_bytes")
        settings = getattr(self.app.state, "settings", None)
        return getattr(settings, name, None) or Settings.model_fields[name].default

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            limit = self._limit()
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise too_large(limit)
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_checked"):
            body = await self.body()
            if len(body) >= OFF_LOOP_BYTES:
                self._checked = await asyncio.to_thread(parse_json, body)
            else:
                self._checked = parse_json(body)
        return self._checked


class CheckedRoute(APIRoute):
    """An API route under the policy: query integers checked, JSON parsed by ``CheckedRequest``
    before FastAPI reads it (a policy refusal is then an ``APIError``, not FastAPI's generic
    'error parsing the body')."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        # what the policy itself answers is in the schema: 400 for a query integer or a body
        # past a bound, 413 for a body over the size limit
        policy = ((400,) if query_names(self.dependant) else ()) + (
            (400, 413) if self.body_field is not None else ())
        for status, response in error_responses(*policy).items():
            self.responses.setdefault(status, response)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        declared = query_names(self.dependant)

        async def checked(request: Request) -> Response:
            request = CheckedRequest(request.scope, request.receive)
            if declared:
                check_query(request, declared)
            if self.body_field is not None and _is_json(request):
                # Not JSON at all: FastAPI reads it again and answers with its own 422.
                with contextlib.suppress(ValueError):
                    await request.json()
            elif self.body_field is not None:
                # A form or an upload: read within the size limit before any parser sees it
                # (FastAPI's form parsing would turn the 413 into a generic 400).
                await request.body()
            return await handle(request)

        return checked
