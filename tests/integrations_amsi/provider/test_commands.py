"""amsi_connect (password from the environment or a prompt, never an argument) and
amsi_import --dry-run."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from integrations.models import Connection, SyncRun
from rentplatform.models import Lease, Property, Unit

pytestmark = pytest.mark.django_db


def connect_args(server, **extra: str) -> list[str]:
    args = [
        "maple",
        "--url",
        server.base_url + "/edexweb/esite",
        "--portfolio",
        "DEMO",
        "--user",
        "edex_demo",
        "--property-id",
        "001",
        "--merchant-id",
        "1001",
        "--time-zone",
        "America/Chicago",
        "--name",
        "Maple Court",
    ]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", value]
    return args


def test_connect_with_env_password(amsi_sandbox, monkeypatch):
    monkeypatch.setenv("AMSI_PASSWORD", "sandbox-secret")
    out = io.StringIO()
    call_command("amsi_connect", *connect_args(amsi_sandbox, cutoff="21:30"), stdout=out)
    text = out.getvalue()
    assert "Connection OK" in text and "sandbox-secret" not in text
    conn = Connection.objects.get(property__code="maple")
    assert conn.provider == "amsi" and conn.last_test_ok is True
    assert conn.credentials == {"password": "sandbox-secret"}
    assert conn.settings["property_id"] == "001" and conn.settings["close_cutoff"] == "21:30"
    assert Property.objects.get(code="maple").time_zone == "America/Chicago"
    # running it again updates, never duplicates
    call_command("amsi_connect", *connect_args(amsi_sandbox, cutoff="21:00"), stdout=out)
    assert Connection.objects.get().settings["close_cutoff"] == "21:00"
    # a merchant id eSite's GetPropertyList contradicts is saved, marked failing, and refused
    with pytest.raises(CommandError, match="wrong ClientMerchantID: .* shows 1001"):
        call_command("amsi_connect", *connect_args(amsi_sandbox, merchant_id="2002"), stdout=out)
    conn = Connection.objects.get()
    assert conn.settings["merchant_id"] == "2002" and conn.last_test_ok is False


def test_connect_refuses_without_tty_or_env(amsi_sandbox, monkeypatch):
    monkeypatch.delenv("AMSI_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="AMSI_PASSWORD"):
        call_command("amsi_connect", *connect_args(amsi_sandbox), stdout=io.StringIO())
    assert not Connection.objects.exists()


def test_connect_prompts_on_a_tty(amsi_sandbox, monkeypatch):
    monkeypatch.delenv("AMSI_PASSWORD", raising=False)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty(""))
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "sandbox-secret")
    call_command("amsi_connect", *connect_args(amsi_sandbox), stdout=io.StringIO())
    assert Connection.objects.get().last_test_ok is True


def test_connect_password_is_not_an_argument(amsi_sandbox):
    with pytest.raises(CommandError):
        call_command("amsi_connect", *connect_args(amsi_sandbox), "--password", "x")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"password": "wrong-password"}, "bad login"),
        ({"portfolio": "NOPE"}, "unknown portfolio 'NOPE'"),
        ({"property_id": "999"}, "unknown property '999'"),
    ],
)
def test_connect_reports_exactly_what_is_wrong(amsi_sandbox, monkeypatch, change, reason):
    monkeypatch.setenv("AMSI_PASSWORD", change.pop("password", "sandbox-secret"))
    with pytest.raises(CommandError, match=reason) as info:
        call_command("amsi_connect", *connect_args(amsi_sandbox, **change), stdout=io.StringIO())
    assert "wrong-password" not in str(info.value)
    conn = Connection.objects.get()  # still saved, marked failing
    assert conn.last_test_ok is False and reason in conn.last_test_message


def test_connect_unreachable(closed_port, monkeypatch, db):
    monkeypatch.setenv("AMSI_PASSWORD", "sandbox-secret")

    class Server:
        base_url = f"http://127.0.0.1:{closed_port}"

    with pytest.raises(CommandError, match="unreachable"):
        call_command("amsi_connect", *connect_args(Server), stdout=io.StringIO())


def test_import_dry_run_writes_nothing(amsi_connection):
    out = io.StringIO()
    call_command("amsi_import", "maple", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "(dry run)" in text and "would change 001-01-101-1: new lease" in text
    assert Lease.objects.count() == 0 and Unit.objects.count() == 0
    assert SyncRun.objects.get().dry_run is True
    out = io.StringIO()
    call_command("amsi_import", "maple", stdout=out)
    assert "24 created" in out.getvalue()
    out = io.StringIO()
    call_command("amsi_import", "maple", stdout=out)
    assert "nothing changed" in out.getvalue()


def test_import_unknown_property(db):
    with pytest.raises(CommandError, match="no AMSI connection"):
        call_command("amsi_import", "nowhere")


def test_import_lists_bad_records_and_fails(amsi_connection, control):
    control.add_lease(
        "001",
        b'<Lease PropertyId="001" BldgID="01" UnitID="101" ResiID="777" EndBalance="lots" '
        b'occustatuscode="C"/>',
    )
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 record"):
        call_command("amsi_import", "maple", stdout=out)
    assert "skipped 001-01-101-777: EndBalance 'lots' is not an amount" in out.getvalue()
    assert Lease.objects.count() == 24  # the rest imported


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--merchant-id", "M1001", "whole number"),
        ("--timeout", "80", "too long"),
        ("--timeout", "0", "positive"),
    ],
)
def test_connect_refuses_settings_a_real_esite_or_the_timing_chain_would_not_take(
    amsi_sandbox, monkeypatch, option, value, message
):
    monkeypatch.setenv("AMSI_PASSWORD", "sandbox-secret")
    args = connect_args(amsi_sandbox)
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    with pytest.raises(CommandError, match=message):
        call_command("amsi_connect", *args, stdout=io.StringIO())
    assert not Connection.objects.exists()
