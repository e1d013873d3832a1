"""Data-quality defects injected into the stream: exact counts per kind, spread over the files, each
defective line carrying exactly one defect, always made from a normal (non-scenario) transaction.
Per-row Python runs only on the small defective subset.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np

from compliance_assets.synthetic.config import EXTRA_LINE_DEFECTS, INLINE_DEFECTS, SynthConfig

# Required fields a producer may drop, with how often each is the one dropped.
# required contract fields a "missing field" defect drops (channel and country are optional: a record without them is valid)
MISSING_FIELDS = (("amount", 0.3), ("currency", 0.25), ("event_time", 0.3), ("account_id", 0.15))
WRONG_TYPE_FIELDS = ("amount", "event_time")
UNKNOWN_CURRENCIES = ("XXX", "EURO", "usd", "BTC", "EU", "RUR")
LINE_KINDS = (*INLINE_DEFECTS, *EXTRA_LINE_DEFECTS)


def allocate(config: SynthConfig, rng: np.random.Generator, lines: np.ndarray) -> tuple[list[dict[str, int]], np.ndarray]:
    """Spread the exact per-kind line defect counts over the chunks (without replacement: each
    chunk gets at most its number of lines) and the missing-from-stream transactions too."""
    kinds = np.repeat(np.arange(len(LINE_KINDS)), [config.defect_count(k) for k in LINE_KINDS])
    per_chunk = rng.multivariate_hypergeometric(lines, len(kinds)) if len(kinds) else np.zeros(len(lines), dtype=int)
    kinds = rng.permutation(kinds)
    bounds = np.concatenate([[0], np.cumsum(per_chunk)])
    alloc = []
    for c in range(len(lines)):
        got = np.bincount(kinds[bounds[c] : bounds[c + 1]], minlength=len(LINE_KINDS))
        alloc.append({k: int(n) for k, n in zip(LINE_KINDS, got)})
    n_missing = config.defect_count("missing_from_stream")
    missing = rng.multivariate_hypergeometric(lines, n_missing) if n_missing else np.zeros(len(lines), dtype=int)
    return alloc, missing


def corrupt(kind: str, line: str, rng: np.random.Generator) -> tuple[str, str]:
    """One defective version of a clean JSON line and the truth detail, e.g. 'missing_required:amount'."""
    if kind == "malformed_json":
        cut = int(rng.integers(len(line) // 4, 3 * len(line) // 4))
        return line[: max(cut, 1)], kind
    rec = json.loads(line)
    detail = kind
    if kind == "missing_required":
        names, p = zip(*MISSING_FIELDS)
        field = str(rng.choice(names, p=np.array(p) / sum(p)))
        del rec[field]
        detail = f"{kind}:{field}"
    elif kind == "wrong_type":
        field = str(rng.choice(WRONG_TYPE_FIELDS))
        if field == "amount":
            rec["amount"] = f"{rec['amount']:.2f}".replace(".", ",") + f" {rec['currency']}"
        else:
            t = dt.datetime.strptime(rec["event_time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
            rec["event_time"] = int(t.timestamp())
        detail = f"{kind}:{field}"
    elif kind == "negative_amount":
        rec["amount"] = 0.0 if rng.random() < 0.1 else -rec["amount"]
    elif kind == "absurd_amount":
        rec["amount"] = round(float(rng.uniform(1.5e8, 5e9)), 2)
    elif kind == "unknown_currency":
        rec["currency"] = str(rng.choice(UNKNOWN_CURRENCIES))
    else:
        raise ValueError(f"Not an in-line defect: {kind}")
    return json.dumps(rec, separators=(",", ":")), detail


def inject(lines: list[str], eligible: np.ndarray, counts: dict[str, int], rng: np.random.Generator) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Corrupt in-line defects and insert duplicates into a chunk's clean lines.

    `eligible` marks the lines defects may be made from (clean normal transactions of the day).
    Returns the final lines, the index of the clean line each came from, and each line's defect
    detail ('' if clean). A duplicate is an exact copy placed somewhere after its source line.
    """
    n = len(lines)
    inline = [k for k in INLINE_DEFECTS for _ in range(counts.get(k, 0))]
    n_dup = counts.get("duplicate", 0)
    candidates = np.flatnonzero(eligible)
    need = len(inline) + n_dup
    if need > len(candidates):
        raise ValueError(f"chunk has {len(candidates)} eligible lines for {need} defects")
    pick = rng.choice(candidates, need, replace=False)
    lines = list(lines)
    defect = np.full(n, "", dtype=object)
    for pos, kind in zip(pick[: len(inline)], inline):
        lines[pos], defect[pos] = corrupt(kind, lines[pos], rng)
    src = pick[len(inline) :]
    insert_before = rng.integers(src + 1, n + 1) if n_dup else np.zeros(0, dtype=np.int64)
    order = np.argsort(np.concatenate([np.arange(n, dtype=float), insert_before - 0.5]), kind="stable")
    base_index = np.concatenate([np.arange(n), src])[order]
    defect = np.concatenate([defect, np.full(n_dup, "duplicate", dtype=object)])[order]
    return [lines[i] for i in base_index], base_index, defect
