"""bench/worker.py's table and the PostgreSQL wait lines under it."""

from __future__ import annotations

import os

import _common as c


def _spread(burst: dict) -> str:
    """The range of the floor + burst pairs' ratios, when there were several."""
    ratios = burst.get("of_floor_all") or []
    if len(ratios) < 2:
        return ""
    return f" ({100 * min(ratios):.0f} to {100 * max(ratios):.0f} % in {len(ratios)} pairs)"


def report(results: list[dict], quick: bool) -> str:
    def verdict(ok: bool) -> str:
        return "" if quick else (" met" if ok else " MISSED")

    rows = []
    for r in results:
        s, f, b = r["steady"], r["floor"], r["burst"]
        run, stop, manual = r["take_running"], r["take_stopped"], r["take_manual"]
        pg = r["vendor"] == "postgresql"
        taking_target = run["rate"] >= 200
        rows.append(
            [r["config"].replace(":", " / "),
             f"{s['rate']:.1f}/s", f"{s['p50']:.3f}", f"{s['p95']:.3f}" + verdict(s["p95"] <= 0.5),
             f"{s['p99']:.3f}",
             f"{f['rate']:.1f}/s" + (f" ({f['extra']} ran twice)" if f["extra"] else ""),
             f"{b['rate']:.1f}/s" + (f" ({b['extra']} extra attempts)" if b["extra"] else ""),
             f"{100 * b['of_floor']:.0f} %" + _spread(b) + verdict(b["of_floor"] >= 0.9),
             f"{run['rate']:.0f}/s" + (verdict(taking_target) if pg else ""),
             f"{stop['rate']:.0f}/s", f"{manual['rate']:.0f}/s",
             f"{run['connections_opened']}/{run['n']}"]
        )  # fmt: skip
    text = c.table(
        ["db / broker", "steady", "p50 s", "p95 s", "p99 s", "floor", "burst", "burst/floor",
         "taking (workers run)", "taking (stopped, queued)", "taking (no queue)",
         "connections opened / payments taken"],
        rows,
    )  # fmt: skip
    for r in results:
        if r.get("commit_floor"):
            one, two = r["commit_floor"]["1"], r["commit_floor"]["2"]
            text += (
                f"\n{r['config']}: commit floor (one small INSERT + COMMIT per transaction, "
                f"psycopg, cluster stopped): {one['rate']:.0f}/s on 1 connection "
                f"({one['ms']:.2f} ms each), {two['rate']:.0f}/s on 2"
            )
        if r["floor"].get("cpu_ms") and r["burst"].get("cpu_ms"):
            for phase, what in (("floor", "bare task"), ("burst", "posting")):
                each = r[phase]["cpu_ms"]
                parts = ", ".join(f"{k} {ms:.1f}" for k, ms in each.items() if k != "machine")
                text += (
                    f"\n{r['config']}: CPU ms per {what} ({phase}): {each['machine']:.1f} on "
                    f"the whole machine; by process still running at the end: {parts}"
                )
        if "inside_ms" in r["burst"]:
            b = r["burst"]
            text += (
                f"\n{r['config']}: during the burst, a delivery from its claim to its outcome took "
                f"{b['inside_ms']:.1f} ms (median); the workers spent "
                f"{100 * b['inside_share']:.0f} % of their time there"
            )
        if r.get("burst_waits"):
            shares = ", ".join(f"{k} {100 * v:.0f} %" for k, v in r["burst_waits"].items())
            text += f"\n{r['config']}: during the burst, active sessions waited on: {shares}"
            for query, n in r["burst_lock_waits"].items():
                text += f"\n  waiting for a lock ({n} samples): {query}"
        waits = r["take_running"]["waits"]
        if waits:
            shares = ", ".join(f"{k} {100 * v:.0f} %" for k, v in waits.items())
            text += (
                f"\n{r['config']}: while taking with the workers running, active sessions "
                f"waited on (share of 5 ms samples): {shares}; "
                f"{r['take_running']['backends_seen']} backends seen"
            )
        for query, n in r["take_running"].get("lock_waits", {}).items():
            text += f"\n  waiting for a lock ({n} samples): {query}"
        cpu = r["take_running"].get("cpu")
        if cpu:
            shares = ", ".join(f"{role} {100 * v:.0f} %" for role, v in cpu.items())
            text += (
                f"\n{r['config']}: while taking with the workers running, the CPUs (all "
                f"{os.cpu_count()}, as a share of their time) went to: {shares}"
            )
    return text
