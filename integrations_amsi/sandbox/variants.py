"""Behaviour switches ("variants") for what real eSite does where nothing public shows it.

One closed table: every variant has its allowed values (the first is the default) and a
one-line description of each value; docs/sandbox.md explains which defaults follow production
evidence and which are guesses. Variants live in memory, per running sandbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str
    values: tuple[tuple[str, str], ...]  # (value, what it does); the first is the default

    @property
    def default(self) -> str:
        return self.values[0][0]

    @property
    def allowed(self) -> list[str]:
        return [v for v, _ in self.values]


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "ids",
            "how ClientJnlNo, ExternalJnlNo, ClientTransactionID, ClientMerchantID are read",
            (
                (
                    "int32",
                    "parsed like .NET Int32.Parse; a bad one is an HTTP 500 SOAP Fault "
                    "(FormatException / OverflowException), nothing written; zero or negative "
                    "batch/transaction ids are refused",
                ),
                ("lenient", "ClientJnlNo digits only, any transaction id string"),
            ),
        ),
        Variant(
            "duplicates",
            "an AddPayment repeating a ClientTransactionID",
            (
                ("refuse", "refused with DUPLICATE_TRANSACTION and the first entry's reference"),
                ("accept", "booked again (a real double posting)"),
            ),
        ),
        Variant(
            "preliminary",
            "what preliminary=1 does on ledger writes",
            (
                ("validate", "every check runs, nothing is written"),
                ("ignore", "ignored: the call writes as if preliminary=0"),
            ),
        ),
        Variant(
            "login_error",
            "the reply to a wrong UserID or Password (any operation)",
            (
                (
                    "document",
                    "an InternetTrafficResponse with ErrorCode 1 'Validation of user "
                    "credentials failed.' in the Result",
                ),
                ("fault", "HTTP 500 SOAP Fault 'Server was unable to process request. ---> …'"),
            ),
        ),
        Variant(
            "empty_list",
            "a leasing read with nothing to return",
            (
                ("error", "an InternetTrafficResponse error, code 103 'No data found'"),
                ("empty", "an empty result root (<PropertyResidents/>, <PropertyUnits/>)"),
            ),
        ),
        Variant(
            "property_list",
            "the shape of GetPropertyList's <Property> items",
            (
                ("attributes", '<Property PropertyId="001" PropertyName="…"/>'),
                ("elements", "<Property><PropertyId>001</PropertyId>…</Property>"),
            ),
        ),
        Variant(
            "return_batch",
            "where a ReturnPayment lands when the batch it names is already settled",
            (
                (
                    "separate",
                    "a new External batch numbered by the original ClientTransactionID, "
                    "negative total",
                ),
                ("original", "the named batch reopens and takes the entry"),
            ),
        ),
    )
}


def defaults() -> dict[str, str]:
    return {name: v.default for name, v in VARIANTS.items()}


def _allowed_text(name: str) -> str:
    return f"{name}={'|'.join(VARIANTS[name].allowed)}"


def check(values: Mapping[str, object]) -> dict[str, str]:
    """Validate {name: value}; ValueError names the bad one and lists what is allowed."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if name not in VARIANTS:
            known = ", ".join(_allowed_text(n) for n in VARIANTS)
            raise ValueError(f"unknown variant {name!r}; known variants: {known}")
        if not isinstance(value, str) or value not in VARIANTS[name].allowed:
            raise ValueError(
                f"variant {name} cannot be {value!r}; allowed: {'|'.join(VARIANTS[name].allowed)}"
            )
        out[name] = value
    return out


def resolve(values: Mapping[str, object] | None = None) -> dict[str, str]:
    """The full set: defaults overridden by the (validated) given values."""
    return {**defaults(), **check(values or {})}


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """`NAME=VALUE` strings (the --variant flag) -> validated {name: value}."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(
                f"--variant takes NAME=VALUE, got {item!r}; known variants: "
                + ", ".join(_allowed_text(n) for n in VARIANTS)
            )
        values[name.strip()] = value.strip()
    return check(values)


def describe() -> dict[str, dict[str, object]]:
    """The table for the control API and docs: summary, default, allowed values with texts."""
    return {
        name: {
            "summary": v.summary,
            "default": v.default,
            "allowed": v.allowed,
            "values": dict(v.values),
        }
        for name, v in VARIANTS.items()
    }


def help_text() -> str:
    """One line per value, for `amsi_sandbox --help`."""
    lines = []
    for name, v in VARIANTS.items():
        for value, text in v.values:
            mark = " (default)" if value == v.default else ""
            lines.append(f"{name}={value}{mark}: {text}.")
    return " ".join(lines)
