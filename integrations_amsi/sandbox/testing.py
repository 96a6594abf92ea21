"""Start a sandbox in a background thread and drive its control API (tests, benchmarks)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from . import DEFAULT_PASSWORD, DEFAULT_PORTFOLIO, DEFAULT_USER
from .control import TOKEN_HEADER
from .seed import load_demo, load_dir
from .server import Sandbox, SandboxHTTPServer, make_server
from .variants import resolve


class SandboxServer:
    """A running sandbox on 127.0.0.1 (port 0 = a free port), state in `state`.

    ``control_token``: every /sandbox/ control request must carry it (X-Sandbox-Token);
    ``control()`` sends it. ``host`` other than loopback needs one (ControlTokenRequired).
    """

    def __init__(
        self,
        state: str | Path,
        *,
        portfolio: str = DEFAULT_PORTFOLIO,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        seed: str | Path | None = None,
        port: int = 0,
        max_body: int | None = None,
        variants: dict[str, str] | None = None,
        control_token: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.state = Path(state)
        self.control_token = control_token or ""
        self.host = host
        self.portfolio, self.user, self.password = portfolio, user, password
        self.seed = seed
        self.port = port
        self.max_body = max_body
        self.variants = resolve(variants)  # ValueError now rather than at start()
        self.sandbox: Sandbox | None = None
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        kwargs: dict[str, Any] = {}
        if self.max_body:
            kwargs["max_body"] = self.max_body
        self.sandbox = Sandbox(
            self.state,
            portfolio=self.portfolio,
            user=self.user,
            password=self.password,
            variants=dict(self.variants),
            control_token=self.control_token,
            **kwargs,
        )
        if self.seed == "demo":
            load_demo(self.sandbox.store)
        elif self.seed:
            load_dir(self.sandbox.store, Path(self.seed))
        self.seed = None  # a restart keeps the state as it is
        try:
            self._httpd = make_server(self.sandbox, self.host, self.port)
        except BaseException:
            self.sandbox.store.close()
            self.sandbox = None
            raise
        self.port = self._httpd.server_address[1]  # a restart comes back on the same port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_connections()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.sandbox is not None:
            # a restart keeps the variants, including those changed through the control API
            self.variants = dict(self.sandbox.variants)
            self.sandbox.store.close()
            self.sandbox = None

    def restart(self) -> SandboxServer:
        """Stop and start again on the same port with the same state file."""
        self.stop()
        return self.start()

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def leasing_url(self) -> str:
        return f"{self.base_url}/edexweb/esite/leasing.asmx"

    @property
    def ledger_url(self) -> str:
        return f"{self.base_url}/edexweb/esite/ledger.asmx"

    @property
    def leasing_wsdl_url(self) -> str:
        return f"{self.leasing_url}?wsdl"

    @property
    def ledger_wsdl_url(self) -> str:
        return f"{self.ledger_url}?wsdl"

    @property
    def credentials(self) -> dict[str, str]:
        return {"UserID": self.user, "Password": self.password, "PortfolioName": self.portfolio}

    def control(self) -> SandboxControl:
        return SandboxControl(self.base_url, token=self.control_token or None)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SandboxControl:
    """A small httpx client for /sandbox/; raises httpx.HTTPStatusError on a refusal.

    ``token``: the sandbox's control token, sent as X-Sandbox-Token with every request.
    """

    def __init__(self, base_url: str, timeout: float = 60, *, token: str | None = None) -> None:
        headers = {TOKEN_HEADER: token} if token else {}
        self.client = httpx.Client(base_url=base_url, timeout=timeout, headers=headers)

    def _ok(self, response: httpx.Response) -> Any:
        response.raise_for_status()
        return response.json()

    def health(self) -> dict:
        return self._ok(self.client.get("/sandbox/health"))

    def reset(self, seed: str | None = None) -> dict:
        return self._ok(self.client.post("/sandbox/reset", json={"seed": seed} if seed else {}))

    def put_property(
        self, property_id: str, name: str = "", client_merchant_id: str = "", bank_book: str = ""
    ) -> dict:
        body = {"name": name, "ClientMerchantID": client_merchant_id, "bank_book": bank_book}
        return self._ok(self.client.put(f"/sandbox/properties/{property_id}", json=body))

    def load_units(self, property_id: str, xml: bytes) -> dict:
        return self._ok(self.client.put(f"/sandbox/properties/{property_id}/units", content=xml))

    def load_residents(self, property_id: str, xml: bytes) -> dict:
        return self._ok(
            self.client.put(f"/sandbox/properties/{property_id}/residents", content=xml)
        )

    def add_lease(self, property_id: str, xml: bytes) -> dict:
        return self._ok(self.client.post(f"/sandbox/leases/{property_id}", content=xml))

    def lease(self, property_id: str, bldg: str, unit: str, resi: str) -> dict:
        return self._ok(self.client.get(f"/sandbox/leases/{property_id}/{bldg}/{unit}/{resi}"))

    def patch_lease(
        self, property_id: str, bldg: str, unit: str, resi: str, **changes: str
    ) -> dict:
        return self._ok(
            self.client.patch(f"/sandbox/leases/{property_id}/{bldg}/{unit}/{resi}", json=changes)
        )

    def ledger(self, **filters: str) -> list[dict]:
        return self._ok(self.client.get("/sandbox/ledger", params=filters))["batches"]

    def add_fault(self, mode: str, operation: str = "*", **options: Any) -> dict:
        body = {"mode": mode, "operation": operation, **options}
        return self._ok(self.client.post("/sandbox/faults", json=body))

    def faults(self) -> list[dict]:
        return self._ok(self.client.get("/sandbox/faults"))["faults"]

    def clear_faults(self) -> dict:
        return self._ok(self.client.delete("/sandbox/faults"))

    def variants(self) -> dict[str, str]:
        """The running sandbox's variants, {name: value}."""
        return self._ok(self.client.get("/sandbox/variants"))["variants"]

    def set_variants(self, **values: str) -> dict[str, str]:
        """Switch variants, e.g. set_variants(ids="lenient"); returns them all."""
        return self._ok(self.client.post("/sandbox/variants", json=values))["variants"]

    def close(self) -> None:
        self.client.close()
