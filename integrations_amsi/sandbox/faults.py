"""Injected transport faults, kept in memory (a restart clears them).

Modes: latency (sleep, then answer), http500 (no processing), reset (TCP RST, no processing),
malformed (HTTP 200, broken body, no processing), lost_reply (commit, then TCP RST), cut_body
(commit, then the headers and half the body, then close), huge_reply (HTTP 200, a well-formed
reply of ``size`` bytes streamed without building it, no processing).
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import asdict, dataclass, field

MODES = ("latency", "http500", "reset", "malformed", "lost_reply", "cut_body", "huge_reply")
MAX_HUGE_REPLY = 16 * 1024 * 1024 * 1024  # 16 GiB: a sane ceiling for a test reply


@dataclass
class Fault:
    id: int
    operation: str
    mode: str
    seconds: float = 0.0
    count: int | None = None
    ratio: float | None = None
    seed: int | None = None
    size: int = 0  # huge_reply: the reply's size in bytes
    chunked: bool = False  # cut_body, huge_reply: Transfer-Encoding chunked, no Content-Length
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def public(self) -> dict:
        data = asdict(self)
        data.pop("_rng")
        return data


class FaultRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict) -> Fault:
        """Validate a JSON spec and register it; ValueError names the bad field."""
        mode = spec.get("mode")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        operation = str(spec.get("operation") or "*")
        count = spec.get("count")
        ratio = spec.get("ratio")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer")
        if ratio is not None and (not isinstance(ratio, int | float) or not 0 <= ratio <= 1):
            raise ValueError("ratio must be a number between 0 and 1")
        if count is None and ratio is None:
            count = 1
        seconds = spec.get("seconds", 0)
        if not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("seconds must be a non-negative number")
        seed = spec.get("seed")
        size = spec.get("size", 0)
        if mode == "huge_reply" and (
            not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_HUGE_REPLY
        ):
            raise ValueError(f"huge_reply needs size: a number of bytes, 1 to {MAX_HUGE_REPLY}")
        chunked = spec.get("chunked", False)
        if not isinstance(chunked, bool):
            raise ValueError("chunked must be true or false")
        with self._lock:
            fault = Fault(
                next(self._ids),
                operation,
                mode,
                float(seconds),
                count,
                ratio,
                seed,
                int(size or 0),
                chunked,
                _rng=random.Random(seed),
            )
            self._faults.append(fault)
        return fault

    def match(self, operation: str) -> Fault | None:
        """The first fault that fires for this call (consuming one of its count)."""
        with self._lock:
            for fault in list(self._faults):
                if fault.operation not in ("*", operation):
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                elif fault.ratio is not None and fault._rng.random() >= fault.ratio:
                    continue
                fault.fired += 1
                return fault
        return None

    def list(self) -> list[dict]:
        with self._lock:
            return [f.public() for f in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
