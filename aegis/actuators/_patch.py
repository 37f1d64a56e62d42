"""The three patch formats of the Kubernetes API, applied to plain JSON data.

- JSON Patch (RFC 6902, ``application/json-patch+json``) including ``test``; a failing
  operation is the API server's ``422 Invalid`` (``patch.go`` wraps ``patchObj.Apply``
  errors in ``NewGenericServerResponse(http.StatusUnprocessableEntity, …)``).
- JSON Merge Patch (RFC 7386, ``application/merge-patch+json``).
- Strategic merge patch (``application/strategic-merge-patch+json``) for the fields the
  actuators touch: maps merge, ``null`` deletes, lists of containers/env/volumes/ports merge
  on their patch merge key, other lists are replaced. ``$patch`` directives are not supported
  (the call is rejected with 400 rather than applied wrongly).
"""

from __future__ import annotations

import copy
from typing import Any

from aegis.actuators._status import ApiStatusError

__all__ = ["JSON_PATCH", "MERGE_PATCH", "STRATEGIC_MERGE_PATCH", "apply_patch"]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# Patch merge keys of the lists the fake needs (k8s.io/api/core/v1 `patchMergeKey` tags).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}


def _bad_request(message: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", message)


def _invalid(message: str) -> ApiStatusError:
    # NewGenericServerResponse(422, …) → reason Invalid, this message prefix.
    return ApiStatusError(
        422,
        "Invalid",
        f"the server rejected our request due to an error in our request ({message})",
    )


def apply_patch(obj: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Return ``obj`` with ``patch`` applied (``obj`` is not modified).

    Raises:
        ApiStatusError: 400 for a malformed patch, 415 for an unknown content type, 422 when a
            JSON Patch operation (including ``test``) fails.
    """
    base = content_type.split(";", maxsplit=1)[0].strip().lower()
    if base == JSON_PATCH:
        if not isinstance(patch, list):
            raise _bad_request(
                "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
            )
        return _json_patch(copy.deepcopy(obj), patch)
    if base == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise _bad_request("merge patch must be a JSON object")
        result = _merge(copy.deepcopy(obj), patch)
        assert isinstance(result, dict)
        return result
    if base == STRATEGIC_MERGE_PATCH:
        if not isinstance(patch, dict):
            raise _bad_request("strategic merge patch must be a JSON object")
        return _strategic(copy.deepcopy(obj), patch)
    raise ApiStatusError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}; got `{content_type}`",
    )


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target


def _strategic(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if key.startswith("$") or (isinstance(key, str) and key.startswith("$setElementOrder")):
            raise _bad_request(f"strategic merge patch directive `{key}` is not supported")
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            target[key] = _strategic(current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list) and key in _MERGE_KEYS and isinstance(target.get(key), list):
            target[key] = _merge_list(target[key], value, _MERGE_KEYS[key])
        else:
            target[key] = copy.deepcopy(value)
    return target


def _merge_list(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise _bad_request(f"list items need the merge key `{merge_key}`")
        for i, existing in enumerate(result):
            if isinstance(existing, dict) and existing.get(merge_key) == item[merge_key]:
                result[i] = _strategic(existing, item)
                break
        else:
            result.append(copy.deepcopy(item))
    return result


# --- RFC 6902 -----------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise _bad_request(f"invalid JSON pointer `{path}`")
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if allow_end and token == "-":  # noqa: S105 - RFC 6902 end-of-array marker
        return len(container)
    if not token.isdigit() or (token.startswith("0") and token != "0"):  # noqa: S105
        raise _invalid(f"invalid array index `{token}`")
    idx = int(token)
    limit = len(container) + (1 if allow_end else 0)
    if idx >= limit:
        raise _invalid(f"array index {idx} out of bounds")
    return idx


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise _invalid(f"doc is missing path: `/{'/'.join(tokens)}`")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise _invalid(f"doc is missing path: `/{'/'.join(tokens)}`")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid(f"doc is missing path: `/{'/'.join(tokens)}`")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise _invalid(f"doc is missing path: `/{'/'.join(tokens)}`")


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _invalid("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid(f"unable to remove nonexistent key: `{last}`")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False))
    raise _invalid(f"doc is missing path: `/{'/'.join(tokens)}`")


def _add(doc: Any, tokens: list[str], value: Any, *, replace: bool) -> Any:
    if not tokens:
        return copy.deepcopy(value)
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise _invalid(
                f"replace operation does not apply: doc is missing key: `/{'/'.join(tokens)}`"
            )
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if replace:
            parent[_index(parent, last, allow_end=False)] = copy.deepcopy(value)
        else:
            parent.insert(_index(parent, last, allow_end=True), copy.deepcopy(value))
    else:
        raise _invalid(f"doc is missing path: `/{'/'.join(tokens)}`")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    # JSON equality: no bool/int confusion (True != 1 in JSON).
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b if not isinstance(a, int | float) else a == b


def _json_patch(doc: Any, ops: list[Any]) -> dict[str, Any]:
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise _bad_request("each JSON patch operation must be an object with an `op`")
        name = op["op"]
        tokens = _pointer(op.get("path"))
        if name in {"add", "replace", "test"} and "value" not in op:
            raise _bad_request(f"JSON patch `{name}` operation needs a `value`")
        if name == "add":
            doc = _add(doc, tokens, op["value"], replace=False)
        elif name == "replace":
            doc = _add(doc, tokens, op["value"], replace=True)
        elif name == "remove":
            _remove(doc, tokens)
        elif name == "test":
            if not _json_equal(_get(doc, tokens), op["value"]):
                raise _invalid(f"testing value /{'/'.join(tokens)} failed: test failed")
        elif name in {"move", "copy"}:
            source = _pointer(op.get("from"))
            value = _remove(doc, source) if name == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, tokens, value, replace=False)
        else:
            raise _bad_request(f"unexpected JSON patch kind `{name}`")
    if not isinstance(doc, dict):
        raise _invalid("patched document is not an object")
    return doc
