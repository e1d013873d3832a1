"""Array cells as JSON text, computed column-wise in Arrow (a day of gold has millions of top_features arrays:
json.dumps per row would cost more than the insert). Null arrays stay NULL; NaN and infinities become null."""

import json

import pyarrow as pa
import pyarrow.compute as pc

_CONTROL = r"[\x00-\x1f]"


def _string_literals(arr: pa.Array) -> pa.Array:
    if pc.any(pc.match_substring_regex(arr, _CONTROL)).as_py():  # rare: let json do the \u escapes
        return pa.array([json.dumps(v) for v in arr.to_pylist()], pa.string())
    escaped = pc.replace_substring(pc.replace_substring(arr, "\\", "\\\\"), '"', '\\"')
    return pc.fill_null(pc.binary_join_element_wise('"', escaped, '"', ""), "null")


def _strings(arr: pa.Array) -> pa.Array:
    """JSON string literals of a string array ("null" for null). Feature names and reason codes repeat a lot:
    the literals are built once per distinct value and taken by index."""
    encoded = arr.dictionary_encode()
    literals = _string_literals(encoded.dictionary)
    return pc.fill_null(literals.take(encoded.indices), "null")


def _numbers(arr: pa.Array) -> pa.Array:
    """JSON numbers of a numeric array ("null" for null, NaN and infinities)."""
    if pa.types.is_floating(arr.type):
        arr = pc.if_else(pc.is_finite(arr), arr, pa.scalar(None, arr.type))
    return pc.fill_null(arr.cast(pa.string()), "null")


def _values(arr: pa.Array) -> pa.Array:
    """JSON text of each value of a flat array (strings, numbers, booleans or structs of those)."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _strings(arr)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _numbers(arr)
    if pa.types.is_boolean(t):
        return pc.fill_null(pc.if_else(arr, "true", "false"), "null")
    if pa.types.is_struct(t):
        children = arr.flatten()
        parts = []
        for i, (field, child) in enumerate(zip(t, children)):
            parts += [("{" if i == 0 else ",") + json.dumps(field.name) + ":", _values(child)]
        joined = pc.binary_join_element_wise(*parts, "}", "") if parts else pa.repeat("{}", len(arr))
        return pc.if_else(arr.is_valid(), joined, "null")
    raise TypeError(f"No JSON conversion for Arrow type {t}")


def json_lists(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """JSON array text of each list cell (`[]` for an empty list, null for a null list)."""
    if isinstance(arr, pa.ChunkedArray):
        return pa.chunked_array([json_lists(c) for c in arr.chunks], pa.string())
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise TypeError(f"Expected a list column, got {arr.type}")
    offsets = arr.offsets  # of a slice: positions in the parent's values
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    elements = _values(arr.values.slice(first, last - first))
    lists = type(arr).from_arrays(pc.subtract(offsets, pa.scalar(first, offsets.type)), elements)
    text = pc.binary_join_element_wise("[", pc.binary_join(lists, ","), "]", "")
    return pc.if_else(arr.is_valid(), text, pa.scalar(None, pa.string())) if arr.null_count else text
