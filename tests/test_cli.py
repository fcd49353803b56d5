"""`flask integrations` install, list, health, stats, test and make-provider."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

import flask_integrations as fi
from flask_integrations import HasHealthCheck, Integration, Provider, webhooks
from flask_integrations.cli import scaffold
from flask_integrations.cli.output import format_table, when
from flask_integrations.cli.scaffold import class_name
from flask_integrations.cli.values import convert_value, is_secret_name
from flask_integrations.clock import utcnow
from flask_integrations.providers import check_provider_class
from flask_integrations.state import current_state
from tests.conftest import reset_tables
from tests.helpers.app import ROOT, db, make_app, skip_or_fail
from tests.helpers.rows import add_requests, failure, open_breaker, seed_figures

SECRET = "sk-live-Very-Secret-4242"


@dataclasses.dataclass
class TypedCredentials:
    client_secret: str
    port: int
    ratio: float
    enabled: bool
    scopes: list[str]
    extra: dict
    region: str | None = None
    anything: Any = None


class Typed(Provider):
    """Every field type a credential dataclass may use."""

    credential_class = TypedCredentials


class Exploding(Provider, HasHealthCheck):
    """A health check that raises with the credential in its message."""

    def health_check(self, integration: Any) -> bool:
        raise RuntimeError(f"upstream rejected key {integration.credentials['token']}\nretry later")


# -- helpers -----------------------------------------------------------------------------------


def invoke(app: Flask, *args: str, input: str | None = None) -> Any:
    return app.test_cli_runner().invoke(args=["integrations", *args], input=input)


def assert_one_error(result: Any, fragment: str) -> str:
    """The command failed with exactly one line of output, an `Error:` line containing `fragment`."""
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert fragment in lines[0], lines[0]
    return lines[0]


def table(output: str, header_start: str = "ID ") -> list[dict[str, str]]:
    """The rows of the first table whose header line starts with `header_start`, by column name.

    Also checks that every cell starts (left-aligned) or ends (right-aligned) where its header does.
    """
    lines = output.splitlines()
    start = next(n for n, line in enumerate(lines) if line.lstrip().startswith(header_start.strip()))
    header = lines[start]
    names = re.split(r"\s{2,}", header.strip())
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip() or set(line.strip()) <= {"-", " "} or line.startswith("Error:"):
            break
        cells = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", line)]
        assert len(cells) == len(names), (header, line)
        for (h_start, h_end), (c_start, c_end, _) in zip(spans, cells, strict=True):
            assert c_start == h_start or c_end == h_end, f"misaligned:\n{header}\n{line}"
        rows.append({name: text for name, (_, _, text) in zip(names, cells, strict=True)})
    return rows


def count_integrations() -> int:
    db.session.rollback()
    return db.session.scalar(sa.select(sa.func.count()).select_from(Integration)) or 0


def fresh(integration_id: int) -> Integration:
    db.session.expire_all()
    return db.session.get(Integration, integration_id)


@pytest.fixture(scope="module")
def sqlite_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """One app for the make-provider tests (each registers a provider key of its own)."""
    app = make_app(f"sqlite:///{tmp_path_factory.mktemp('scaffold') / 'scaffold.db'}")
    with app.app_context():
        reset_tables()
    return app


@pytest.fixture
def typed(ext, ctx):
    ext.register("typed", Typed)
    ext.register("exploding", Exploding)
    return ext


# -- output helpers ----------------------------------------------------------------------------


def test_format_table_aligns_columns_and_puts_footer_under_a_rule():
    text = format_table(
        ["ID", "NAME", "N"], [[1, "a\nb", 5], [10, None, 12]], right={0, 2}, footer=[["T", "", 17]]
    )
    assert text.splitlines() == [
        "ID  NAME   N",
        " 1  a b    5",
        "10  -     12",
        "--  ----  --",
        " T        17",
    ]


def test_when_is_relative_or_iso():
    now = utcnow()
    assert when(None, now) == "-"
    assert when(now - timedelta(hours=2, minutes=5), now) == "2h ago"
    assert when(now + timedelta(minutes=13, seconds=30), now) == "in 13m"
    assert when(now - timedelta(days=3), now) == "3d ago"
    assert when(now.replace(microsecond=0), now, iso=True) == now.replace(microsecond=0).isoformat()


# -- install: value conversion -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    [
        ("abc", str, "abc"),
        (" 42 ", int, 42),
        ("-3", int, -3),
        ("1.5", float, 1.5),
        ("2", float, 2.0),
        ("TRUE", bool, True),
        ("yes", bool, True),
        ("1", bool, True),
        ("false", bool, False),
        ("No", bool, False),
        ("0", bool, False),
        ('["a", "b"]', list[str], ["a", "b"]),
        ("[1, 2]", list, [1, 2]),
        ('{"a": 1}', dict, {"a": 1}),
        ('{"a": 1}', dict[str, int], {"a": 1}),
        ("null", str | None, None),
        ("eu", str | None, "eu"),
        ("7", int | None, 7),
        ("7", int | float | str | None, 7),
        ("7.5", int | float | str | None, 7.5),
        ("2025-01-01", int | float | str | None, "2025-01-01"),
        ("123", Any, "123"),
        ('{"nested": [1]}', Any, {"nested": [1]}),
    ],
)
def test_convert_value_converts_text_to_the_field_type(text, annotation, expected):
    value = convert_value(text, annotation)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "annotation", "message"),
    [
        ("abc", int, "expected an integer"),
        ("1.5", int, "expected an integer"),
        ("maybe", bool, "expected true/false, yes/no or 1/0"),
        ("fast", float, "expected a number"),
        ("inf", float, "expected a finite number"),
        ("a,b", list[str], "expected a JSON list"),
        ('{"a": 1}', list, "expected a JSON list"),
        ("[1]", dict, "expected a JSON dict"),
        ("[1, 2]", list[str], "expected list[str]"),
        ("zz", int | None, "expected int | None"),
        ("{oops", Any, "not valid JSON"),
    ],
)
def test_convert_value_says_what_was_expected_without_the_value(text, annotation, message):
    with pytest.raises(ValueError) as info:
        convert_value(text, annotation)
    assert message in str(info.value)
    assert text not in str(info.value)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("Password", True),
        ("client_secret", True),
        ("access_token", True),
        ("authorization", True),  # in INTEGRATIONS_REDACT_KEYS
        ("subdomain", False),
        ("timeout", False),
    ],
)
def test_secret_looking_field_names(name, secret):
    assert is_secret_name(name, ["authorization"]) is secret


# -- install -----------------------------------------------------------------------------------


def test_install_creates_the_integration_with_typed_values(app, ctx):
    result = invoke(
        app,
        "install",
        "tickets",
        "--name",
        "Acme support",
        "--credential",
        f"api_key={SECRET}",
        "--credential",
        "subdomain=acme",
        "--credential",
        "timeout=30",
        "--credential",
        "verify=no",
        "--metadata",
        "team=support",
        "--metadata",
        'tags=["vip", "eu"]',
    )
    assert result.exit_code == 0, result.output
    integration_id = int(
        re.search(r"Created integration (\d+) \(tickets, 'Acme support'\)", result.output)[1]
    )
    assert "health check passed" in result.output
    integration = fresh(integration_id)
    assert integration.credentials_dict() == {
        "api_key": SECRET,
        "subdomain": "acme",
        "timeout": 30,
        "verify": False,
    }
    assert integration.metadata == {"team": "support", "tags": ["vip", "eu"]}
    assert integration.name == "Acme support"


def test_install_defaults_the_name_to_the_provider_name(app, ctx):
    result = invoke(
        app, "install", "tickets", "--credential", "api_key=k123", "--credential", "subdomain=a",
        "--metadata", "team=t",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert db.session.scalars(sa.select(Integration.name)).all() == ["Tickets"]


def test_install_prompts_for_missing_required_fields_hiding_secret_ones(app, ctx):
    result = invoke(app, "install", "tickets", "--metadata", "team=support", input=f"{SECRET}\nacme-sub\n")
    assert result.exit_code == 0, result.output
    assert "Credential api_key (str): \n" in result.output  # typed without echo
    assert "Credential subdomain (str): acme-sub\n" in result.output
    assert "Metadata team" not in result.output  # given, so not asked
    assert "timeout" not in result.output  # optional fields keep their defaults
    assert SECRET not in result.output
    integration = fresh(int(re.search(r"integration (\d+)", result.output)[1]))
    assert integration.credentials_dict()["api_key"] == SECRET
    assert integration.credentials_dict()["subdomain"] == "acme-sub"


def test_install_asks_again_when_a_prompted_value_does_not_convert(app, typed):
    given = [
        "--credential",
        f"client_secret={SECRET}",
        "--credential",
        "ratio=0.5",
        "--credential",
        "enabled=1",
    ]
    given += ["--credential", "scopes=[]", "--credential", "extra={}"]
    result = invoke(app, "install", "typed", *given, input="eighty\n8080\n")
    assert result.exit_code == 0, result.output
    assert "Error: expected an integer" in result.output
    assert "eighty" in result.output  # port is not secret-looking: echoed as typed
    integration = db.session.scalars(sa.select(Integration)).one()
    assert integration.credentials_dict()["port"] == 8080


def test_install_with_no_input_fails_before_writing_anything(app, ctx):
    result = invoke(app, "install", "tickets", "--credential", "subdomain=acme", "--no-input")
    assert_one_error(result, "Missing required credential field(s) api_key and metadata field(s) team")
    assert count_integrations() == 0


def test_install_without_input_available_fails_with_one_line(app, ctx):
    result = invoke(app, "install", "tickets", "--metadata", "team=t", input="")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: No value for required credential field 'api_key'; give it with --credential."
    )
    assert count_integrations() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--credential", "timeout=abc"], "Error: --credential timeout: expected an integer."),
        (["--credential", "verify=maybe"], "Error: --credential verify: expected true/false, yes/no or 1/0."),
        (["--metadata", "tags=vip"], "Error: --metadata tags: expected a JSON list"),
        (["--metadata", "tags=[1, 2]"], "Error: --metadata tags: expected list[str]."),
        (["--credential", "nonsense"], "Error: --credential number 1 is not KEY=VALUE"),
        (["--credential", "subdomain=a", "--credential", "=x"], "Error: --credential number 2 is not KEY"),
        (
            ["--credential", "subdomain=a", "--credential", "subdomain=b"],
            "--credential subdomain is given more",
        ),
        (
            ["--credential", "password=hunter22"],
            "Error: Unknown credential field(s) for provider 'tickets': password "
            "(it has: api_key, subdomain, timeout, verify).",
        ),
        (["--metadata", "colour=red"], "Unknown metadata field(s) for provider 'tickets': colour"),
        (["--name", "  "], "Error: --name must be 1 to 255 characters."),
        (["--name", "x" * 256], "Error: --name must be 1 to 255 characters."),
    ],
)
def test_install_bad_arguments_fail_with_one_line_naming_the_field(app, ctx, args, message):
    given = {a.split("=")[0] for a in args if "=" in a}
    base: list[str] = []
    for option, pair in (
        ("--credential", "api_key=k123"),
        ("--credential", "subdomain=s"),
        ("--metadata", "team=t"),
    ):
        if pair.split("=")[0] not in given:
            base += [option, pair]
    result = invoke(app, "install", "tickets", *args, *base, "--no-input")
    assert_one_error(result, message)
    assert "hunter22" not in result.output
    assert count_integrations() == 0


def test_install_validation_errors_from_the_provider_fail_with_one_line(app, typed):
    given = ["--credential", "client_secret=s3cr", "--credential", "port=1", "--credential", "ratio=1"]
    given += ["--credential", "enabled=yes", "--credential", "scopes=[]", "--credential", "extra={}"]
    result = invoke(app, "install", "typed", *given, "--metadata", "anything=1", "--no-input")
    assert result.exit_code == 0, result.output  # no metadata class: any dict
    integration = db.session.scalars(sa.select(Integration)).one()
    assert integration.metadata == {"anything": "1"}
    assert integration.credentials_dict() == {
        "client_secret": "s3cr",
        "port": 1,
        "ratio": 1.0,
        "enabled": True,
        "scopes": [],
        "extra": {},
        "region": None,
        "anything": None,
    }


def test_install_unknown_provider(app, ctx):
    result = invoke(app, "install", "nope", "--no-input")
    assert_one_error(
        result,
        "Error: Provider 'nope' is not registered; add it to INTEGRATIONS_PROVIDERS or call "
        "integrations.register().",
    )


def test_install_without_provider_argument_is_one_error_line(app, ctx):
    assert_one_error(invoke(app, "install"), "Error: Missing argument 'PROVIDER'. See '")


def test_install_rolls_back_when_the_health_check_fails(app, ctx):
    result = invoke(
        app, "install", "tickets", "--credential", "api_key=broken", "--credential", "subdomain=acme",
        "--metadata", "team=t",
    )  # fmt: skip
    line = assert_one_error(
        result, "Health check of the new integration failed (health check returned False)"
    )
    assert "was removed again" in line and "--force" in line
    assert count_integrations() == 0
    for kind in ("requests", "logs"):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(current_state().tables[kind])) == 0


def test_install_rolls_back_when_the_health_check_raises_and_never_shows_the_secret(app, typed):
    result = invoke(app, "install", "exploding", "--credential", f"token={SECRET}")
    line = assert_one_error(result, "(RuntimeError: upstream rejected key [REDACTED] retry later)")
    assert SECRET not in line
    assert count_integrations() == 0


def test_install_with_force_keeps_an_integration_whose_health_check_fails(app, ctx):
    result = invoke(
        app, "install", "tickets", "--credential", "api_key=broken", "--credential", "subdomain=acme",
        "--metadata", "team=t", "--force",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Warning: health check failed (health check returned False); kept because of --force." in (
        result.output
    )
    assert re.search(r"^Created integration \d+ \(tickets, 'Tickets'\)\.$", result.output, re.M)
    assert count_integrations() == 1


def test_install_keeps_an_integration_whose_provider_has_no_health_check(app, ctx):
    result = invoke(
        app, "install", "loose", "--credential", "token=00123", "--credential", 'scopes=["read"]',
        "--credential", "empty=",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "the provider has no health check" in result.output
    integration = db.session.scalars(sa.select(Integration)).one()
    assert integration.credentials_dict() == {"token": "00123", "scopes": ["read"], "empty": ""}
    assert integration.metadata is None


# -- list --------------------------------------------------------------------------------------


def test_list_says_so_when_there_are_no_integrations(app, ctx):
    result = invoke(app, "list")
    assert result.exit_code == 0 and result.output == "No integrations.\n"


def test_list_prints_an_aligned_table(app, ext, integration):
    other = ext.create("loose", "A much longer integration name", {"token": SECRET})
    other.update(owner_type="users", owner_id=4)
    other.disable()
    now = utcnow()
    table_ = current_state().tables["integrations"]
    db.session.execute(
        sa.update(table_)
        .where(table_.c.id == integration.id)
        .values(
            last_synced_at=now - timedelta(hours=2, minutes=5),
            next_sync_at=now + timedelta(minutes=13, seconds=30),
            consecutive_failures=6,
            health_status="degraded",
        )
    )
    db.session.commit()
    result = invoke(app, "list")
    assert result.exit_code == 0, result.output
    assert table(result.output) == [
        {
            "ID": str(integration.id),
            "PROVIDER": "tickets",
            "NAME": "Acme tickets",
            "OWNER": "-",
            "ACTIVE": "yes",
            "HEALTH": "degraded",
            "FAILURES": "6",
            "LAST SYNC": "2h ago",
            "NEXT SYNC": "in 13m",
        },
        {
            "ID": str(other.id),
            "PROVIDER": "loose",
            "NAME": "A much longer integration name",
            "OWNER": "users:4",
            "ACTIVE": "no",
            "HEALTH": "healthy",
            "FAILURES": "0",
            "LAST SYNC": "-",
            "NEXT SYNC": "-",
        },
    ]
    iso = invoke(app, "list", "--iso")
    synced = (now - timedelta(hours=2, minutes=5)).isoformat(timespec="seconds")
    assert table(iso.output)[0]["LAST SYNC"] == synced


def test_list_filters_by_provider_and_inactive(app, ext, integration):
    loose = ext.create("loose", "Loose one", {})
    loose.disable()
    assert [r["ID"] for r in table(invoke(app, "list", "--provider", "loose").output)] == [str(loose.id)]
    assert [r["ID"] for r in table(invoke(app, "list", "--inactive").output)] == [str(loose.id)]
    assert invoke(app, "list", "--provider", "tickets", "--inactive").output == "No integrations.\n"


def test_list_unknown_provider_fails(app, integration):
    assert_one_error(invoke(app, "list", "--provider", "zzz"), "Error: Provider 'zzz' is not registered")


def test_list_shows_rows_of_a_provider_no_longer_registered(app, integration):
    orphan = insert_orphan()
    result = invoke(app, "list", "--provider", "gone")
    assert result.exit_code == 0, result.output
    assert [r["ID"] for r in table(result.output)] == [str(orphan)]


def insert_orphan() -> int:
    """An integration row whose provider was removed from the config."""
    table_ = current_state().tables["integrations"]
    now = utcnow()
    row = {"provider": "gone", "name": "Old", "credentials": "not-a-token", "created_at": now}
    orphan = db.session.execute(
        sa.insert(table_).values(**row, updated_at=now, is_active=True, health_status="healthy")
        .values(consecutive_failures=0)
        .returning(table_.c.id)
    ).scalar_one()  # fmt: skip
    db.session.commit()
    return orphan


# -- health ------------------------------------------------------------------------------------


def test_health_reports_requests_error_rate_latency_breaker_and_top_errors(app, ext, integration):
    quiet = ext.create("loose", "Quiet", {})
    seed_figures(integration.id)
    open_breaker(quiet.id)
    result = invoke(app, "health")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Last 24 h:\n")
    assert table(result.output) == [
        {
            "ID": str(integration.id),
            "PROVIDER": "tickets",
            "NAME": "Acme tickets",
            "HEALTH": "healthy",
            "FAILURES": "0",
            "BREAKER": "closed",
            "REQUESTS": "10",
            "ERROR RATE": "50.0%",
            "P50": "55 ms",
            "P95": "95.5 ms",
        },
        {
            "ID": str(quiet.id),
            "PROVIDER": "loose",
            "NAME": "Quiet",
            "HEALTH": "healthy",
            "FAILURES": "0",
            "BREAKER": "open",
            "REQUESTS": "0",
            "ERROR RATE": "-",
            "P50": "-",
            "P95": "-",
        },
    ]
    errors_part = result.output.split("Top errors (last 24 h):\n")[1]
    assert table(errors_part) == [
        {"ID": str(integration.id), "COUNT": "2", "ERROR": "HTTP 503"},
        {"ID": str(integration.id), "COUNT": "1", "ERROR": "ConnectError: connection refused"},
        {"ID": str(integration.id), "COUNT": "1", "ERROR": "HTTP 404"},
    ]


def test_health_window_and_single_integration(app, ext, integration):
    other = ext.create("loose", "Other", {})
    seed_figures(integration.id)
    add_requests(other.id, failure(502, "Bad gateway from proxy"))
    result = invoke(app, "health", "--hours", "48", "--integration", str(integration.id))
    assert result.exit_code == 0, result.output
    [row] = table(result.output)
    assert (row["ID"], row["REQUESTS"], row["ERROR RATE"], row["P50"], row["P95"]) == (
        str(integration.id),
        "11",
        "54.5%",
        "60 ms",
        "550 ms",  # between 100 and 1000 ms
    )
    errors = table(result.output.split("Top errors (last 48 h):\n")[1])
    assert [(e["COUNT"], e["ERROR"]) for e in errors] == [
        ("2", "HTTP 503"),
        ("1", "ConnectError: connection refused"),
        ("1", "HTTP 404"),
    ]
    other_result = invoke(app, "health", "--integration", str(other.id))
    assert table(other_result.output.split("Top errors")[1].split("\n", 1)[1]) == [
        {"ID": str(other.id), "COUNT": "1", "ERROR": "HTTP 502: Bad gateway from proxy"}
    ]


def test_health_without_failures_says_so(app, integration):
    add_requests(integration.id, {"duration_ms": 7})
    result = invoke(app, "health")
    assert result.exit_code == 0, result.output
    assert table(result.output)[0]["P95"] == "7 ms"
    assert result.output.endswith("\nNo failed requests in the last 24 h.\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--integration", "999"], "Error: Integration 999 does not exist."),
        (["--integration", "abc"], "Error: Invalid value for '--integration': 'abc' is not a valid integer"),
        (["--hours", "0"], "Error: Invalid value for '--hours': 0 is not in the range 1<=x<=878400"),
        (["--hours", "99999999999"], "Error: Invalid value for '--hours': 99999999999 is not in the range"),
        (["--hours", "soon"], "is not a valid integer"),
        (["--bogus"], "Error: No such option '--bogus'. Did you mean '--hours'? See '"),
    ],
)
def test_health_and_stats_bad_arguments(app, integration, args, message):
    for command in ("health", "stats"):
        assert_one_error(invoke(app, command, *args), message)


def test_health_and_stats_with_no_integrations(app, ctx):
    assert invoke(app, "health").output == "No integrations.\n"
    assert invoke(app, "stats").output == "No integrations.\n"


# -- stats -------------------------------------------------------------------------------------


def test_stats_counts_requests_errors_and_cache_hit_ratio_with_a_total(app, ext, integration):
    other = ext.create("loose", "Other", {})
    add_requests(
        integration.id,
        {"cache_hits": 3},
        {"stale_hits": 2, **failure(503, "HTTP 503")},
        {"cache_hits": 1},
        {},
        {"cache_hits": 50, "hours_ago": 30},
    )
    add_requests(other.id, {})
    result = invoke(app, "stats")
    assert result.exit_code == 0, result.output
    rows = table(result.output)
    assert rows == [
        {
            "ID": str(integration.id),
            "PROVIDER": "tickets",
            "NAME": "Acme tickets",
            "REQUESTS": "4",
            "ERRORS": "1",
            "ERROR RATE": "25.0%",
            "CACHE HITS": "4",
            "STALE HITS": "2",
            "HIT RATIO": "60.0%",
        },
        {
            "ID": str(other.id),
            "PROVIDER": "loose",
            "NAME": "Other",
            "REQUESTS": "1",
            "ERRORS": "0",
            "ERROR RATE": "0.0%",
            "CACHE HITS": "0",
            "STALE HITS": "0",
            "HIT RATIO": "0.0%",
        },
    ]
    total = result.output.strip().splitlines()[-1].split()
    assert total == ["TOTAL", "5", "1", "20.0%", "4", "2", "54.5%"]
    widened = invoke(app, "stats", "--hours", "48", "--integration", str(integration.id))
    [row] = table(widened.output)
    assert (row["REQUESTS"], row["CACHE HITS"], row["HIT RATIO"]) == (
        "5",
        "54",
        "91.8%",
    )  # (54 + 2) / (5 + 54 + 2)


# -- test --------------------------------------------------------------------------------------


def test_test_runs_health_checks_records_outcomes_and_exits_1_on_failure(app, ext, integration):
    broken = ext.create("tickets", "Broken", {"api_key": "broken", "subdomain": "a"}, metadata={"team": "t"})
    loose = ext.create("loose", "No check", {})
    switched_off = ext.create(
        "tickets", "Off", {"api_key": "broken", "subdomain": "a"}, metadata={"team": "t"}
    )
    switched_off.disable()
    table_ = current_state().tables["integrations"]
    db.session.execute(sa.update(table_).where(table_.c.id == integration.id).values(consecutive_failures=3))
    db.session.commit()
    result = invoke(app, "test")
    assert result.exit_code == 1
    assert table(result.output) == [
        {
            "ID": str(integration.id),
            "PROVIDER": "tickets",
            "NAME": "Acme tickets",
            "RESULT": "ok",
            "DETAIL": "health check passed",
        },
        {
            "ID": str(broken.id),
            "PROVIDER": "tickets",
            "NAME": "Broken",
            "RESULT": "FAILED",
            "DETAIL": "health check returned False",
        },
        {
            "ID": str(loose.id),
            "PROVIDER": "loose",
            "NAME": "No check",
            "RESULT": "skipped",
            "DETAIL": "the provider has no health check",
        },
    ]
    assert (
        result.output.strip().splitlines()[-1]
        == f"Error: 1 health check(s) failed: integration(s) {broken.id}."
    )
    assert fresh(integration.id).consecutive_failures == 0
    assert fresh(broken.id).consecutive_failures == 1
    assert fresh(switched_off.id).consecutive_failures == 0  # inactive: not run


def test_test_passes_when_every_check_passes(app, integration):
    result = invoke(app, "test")
    assert result.exit_code == 0, result.output
    assert table(result.output)[0]["RESULT"] == "ok"


def test_test_one_integration_and_skipped_providers(app, ext, integration):
    loose = ext.create("loose", "No check", {})
    orphan = insert_orphan()
    one = invoke(app, "test", "--integration", str(loose.id))
    assert one.exit_code == 0 and [r["RESULT"] for r in table(one.output)] == ["skipped"]
    gone = invoke(app, "test", "--integration", str(orphan))
    assert table(gone.output)[0]["DETAIL"] == "provider 'gone' is not registered"


def test_test_failure_detail_never_shows_the_secret(app, typed):
    exploding = typed.create("exploding", "Boom", {"token": SECRET})
    result = invoke(app, "test")
    assert result.exit_code == 1
    assert table(result.output)[0]["DETAIL"] == "RuntimeError: upstream rejected key [REDACTED] retry later"
    assert SECRET not in result.output
    assert fresh(exploding.id).consecutive_failures == 1


@pytest.mark.parametrize(
    "args",
    [
        ["health", "--integration", "99999999999999999999999"],
        ["sync", "--integration", "9223372036854775808"],
        ["replay-webhook", "99999999999999999999999"],
        ["skip-sync-item", "0"],
        ["advance-cursor", "--", "-1"],
    ],
)
def test_ids_out_of_range_are_one_error_line_not_an_overflow(app, ctx, args):
    """Regression: an id past BIGINT reached the database and raised OverflowError."""
    result = invoke(app, *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert_one_error(result, "is not in the range")


def test_test_bad_arguments(app, ctx):
    assert invoke(app, "test").output == "No active integrations.\n"
    assert_one_error(invoke(app, "test", "--integration", "5"), "Error: Integration 5 does not exist.")
    assert_one_error(invoke(app, "test", "--integration", "x"), "is not a valid integer")


# -- no secrets anywhere -----------------------------------------------------------------------


def test_no_command_ever_prints_a_credential_value(app, ctx, tmp_path):
    installed = invoke(
        app, "install", "tickets", "--credential", f"api_key={SECRET}", "--metadata", "team=t",
        input="sub-domain-value\n",
    )  # fmt: skip
    assert installed.exit_code == 0, installed.output
    integration_id = re.search(r"integration (\d+)", installed.output)[1]
    add_requests(int(integration_id), failure(500, "HTTP 500"), {"cache_hits": 2})
    outputs = [installed.output]
    for args in (
        ["list"],
        ["list", "--iso"],
        ["health"],
        ["stats"],
        ["test"],
        ["test", "--integration", integration_id],
        ["install", "tickets", "--credential", f"api_key={SECRET}", "--no-input"],
        ["install", "tickets", "--credential", f"api_key={SECRET}", "--credential", "timeout=x"],
        ["install", "tickets", "--credential", SECRET],
        ["install", "tickets", "--credential", f"api_key={SECRET}", "--credential", f"api_key={SECRET}"],
        ["install", "tickets", "--credential", f"{SECRET}=1"],
        ["make-provider", "acme", "--path", str(tmp_path), "--tests-path", str(tmp_path / "tests")],
    ):
        outputs.append(invoke(app, *args).output)
    hidden = invoke(app, "install", "tickets", "--metadata", "team=t", input=f"{SECRET}\nsub\n")
    outputs.append(hidden.output)
    for output in outputs:
        assert SECRET not in output


# -- make-provider -----------------------------------------------------------------------------

COMBINATIONS = [
    scaffold.Capabilities(sync=sync, webhooks=hooks, health_check=health, oauth=oauth)
    for sync in (None, *scaffold.SYNC_STYLES)
    for hooks in (False, True)
    for health in (False, True)
    for oauth in (False, True)
]
#: The ruff rules the generated code passes, at ruff's default line length (88).
RUFF_RULES = "E,F,W,I,UP,B,SIM"


def flags(capabilities: scaffold.Capabilities) -> list[str]:
    c = capabilities
    wanted = (("--webhooks", c.webhooks), ("--health-check", c.health_check), ("--oauth", c.oauth))
    return [*(["--sync", c.sync] if c.sync else []), *(flag for flag, on in wanted if on)]


def combination_id(capabilities: scaffold.Capabilities) -> str:
    return "+".join(flag.removeprefix("--") for flag in flags(capabilities)) or "plain"


def provider_name(capabilities: scaffold.Capabilities) -> str:
    """A provider key of its own for each combination (the module-scoped app registers them all)."""
    return "acme_" + combination_id(capabilities).replace("+", "_").replace("-", "")


def import_file(path: Path, module_name: str) -> Any:
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[module_name]
    return module


def class_lines(source: str, cls: str) -> list[str]:
    """The lines of the class statement of `cls` to the end of the module (the class is last)."""
    lines = source.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(f"class {cls}("))
    return lines[start:]


def ruff() -> str:
    found = shutil.which("ruff")
    if found is None:
        skip_or_fail("ruff is not installed (pip install -e '.[dev]')")
    return found


@pytest.mark.parametrize("capabilities", COMBINATIONS, ids=combination_id)
def test_make_provider_renders_a_kit_provider_that_registers_for_every_combination(
    sqlite_app, tmp_path, capabilities
):
    """In process, no subprocess: render, import, check_provider_class, register, and what
    each capability declares."""
    c, name = capabilities, provider_name(capabilities)
    source = scaffold.render(name, c, f"providers.{name}")
    assert "NotImplementedError" not in source
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    cls = getattr(import_file(path, f"generated_{name}"), class_name(name))
    check_provider_class(name, cls)
    compile(scaffold.render_test(name, c, f"providers.{name}"), "test.py", "exec")
    ext = sqlite_app.extensions["integrations"]
    ext.register(name, cls)
    credentials = {"client_id": "id", "client_secret": "s"} if c.oauth else {"api_key": "k"}
    if c.webhooks:
        credentials["webhook_secret"] = "w"
    with sqlite_app.app_context():
        integration = ext.create(name, "Generated", credentials)
        provider = integration.provider_instance
        assert provider.credential_class.__name__ == class_name(name) + "Credentials"
        assert (provider.auth is None) == c.oauth  # OAuth2 providers send their token instead
        assert isinstance(provider, fi.ScheduledSync) == (c.sync == "full")
        assert isinstance(provider, fi.IncrementalSync) == (c.sync == "incremental")
        if c.sync:
            assert provider.sync_item_handler("item") is not None
        if c.webhooks:
            assert isinstance(provider.webhook_verifier, webhooks.Hmac)
            assert provider.webhook_verifier.timestamp_header  # a captured delivery cannot be replayed
            assert (provider.webhook_event_key, provider.webhook_delivery_key) == ("type", "id")
            assert sorted(provider.webhook_handlers()) == ["item.created", "item.updated"]
        if c.health_check:
            assert provider.health_check_endpoint == "/me" and "def health_check" not in source
        if c.oauth:
            url = provider.authorization_url(integration, "https://app.example/cb", "st4te", "ch4llenge")
            assert "client_id=id" in url and "state=st4te" in url and "code_challenge=ch4llenge" in url
        db.session.remove()


@pytest.mark.parametrize("name", ["acme", "acme_customer_success"])
def test_make_provider_declares_a_typical_provider_in_30_lines(name):
    capabilities = scaffold.Capabilities(sync="incremental", webhooks=True, health_check=True)
    source = scaffold.render(name, capabilities, f"providers.{name}")
    body = class_lines(source, class_name(name))
    assert len(body) <= 30, "\n".join(body)
    assert '    auth = auth.Bearer("api_key")' in body
    assert '    health_check_endpoint = "/me"' in body


def test_make_provider_writes_ruff_clean_code_for_every_combination(tmp_path):
    """Both modules of every combination, at ruff's defaults (a user's project has no config
    of ours): no lint error, and `ruff format` would change nothing."""
    for name in ("acme", "acme_customer_success"):
        for capabilities in COMBINATIONS:
            folder = tmp_path / f"{name}_{provider_name(capabilities)}"
            folder.mkdir()
            module = f"providers.{name}"
            folder.joinpath(f"{name}.py").write_text(scaffold.render(name, capabilities, module))
            test_source = scaffold.render_test(name, capabilities, module)
            folder.joinpath(f"test_{name}.py").write_text(test_source)
    for command in (["check", "--select", RUFF_RULES], ["format", "--check"]):
        done = subprocess.run(
            [ruff(), *command, "--isolated", "--no-cache", "."], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_make_provider_writes_the_module_and_its_test_and_prints_where_to_go_next(
    sqlite_app, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = invoke(sqlite_app, "make-provider", "zendesk", "--sync", "full", "--webhooks")
    assert result.exit_code == 0, result.output
    provider, test = Path("providers") / "zendesk.py", Path("tests") / "test_zendesk.py"
    assert result.output.splitlines() == [
        f"Created {provider}",
        f"Created {test}",
        "Add it to INTEGRATIONS_PROVIDERS in the app's config:",
        '    "zendesk": "providers.zendesk:Zendesk",',
        f"Its handlers are methods of Zendesk in {provider}: store_item(), item_changed().",
        "Fill in their TODOs to store what arrives in the app's tables.",
        f"Run its tests: python -m pytest {test}",
    ]
    source = provider.read_text()
    assert 'INTEGRATIONS_PROVIDERS = {"zendesk": "providers.zendesk:Zendesk"}' in source
    assert "class Zendesk(fi.Provider, fi.ScheduledSync, fi.HandlesWebhooks):" in source
    assert "# TODO: store the item in your app's tables" in source
    assert 'PROVIDER_CLASS = "providers.zendesk:Zendesk"' in test.read_text()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "providers",
        str(provider),
        "tests",
        str(test),
    ]  # two new files, nothing else (no __init__.py)


def test_make_provider_without_handlers_says_to_fill_in_the_todos(sqlite_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(sqlite_app, "make-provider", "acme", "--oauth", "--health-check")
    assert result.exit_code == 0, result.output
    assert f"Then fill in its TODOs in {Path('providers') / 'acme.py'}." in result.output
    assert "handlers" not in result.output


def test_make_provider_tests_path_puts_the_test_elsewhere(sqlite_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(
        sqlite_app, "make-provider", "acme", "--path", "app/providers", "--tests-path", "app/tests"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "app" / "providers" / "acme.py").exists()
    test = tmp_path / "app" / "tests" / "test_acme.py"
    assert 'PROVIDER_CLASS = "app.providers.acme:Acme"' in test.read_text()
    assert not (tmp_path / "tests").exists()


def test_make_provider_outside_the_current_directory_explains_the_module_path(
    sqlite_app, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    try:
        result = invoke(sqlite_app, "make-provider", "acme", "--path", str(outside))
        assert result.exit_code == 0, result.output
        assert '    "acme": "<module>:Acme",' in result.output
        assert (
            f"where <module> is the import path of {outside / 'acme.py'} (its test imports it as 'acme')."
            in result.output
        )
        assert 'PROVIDER_CLASS = "acme:Acme"' in (tmp_path / "tests" / "test_acme.py").read_text()
    finally:
        shutil.rmtree(outside, ignore_errors=True)


@pytest.mark.parametrize("existing", ["providers/acme.py", "tests/test_acme.py"])
def test_make_provider_never_overwrites_a_file_and_then_writes_nothing(
    sqlite_app, tmp_path, monkeypatch, existing
):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / existing
    mine.parent.mkdir()
    mine.write_text("# mine\n")
    result = invoke(sqlite_app, "make-provider", "acme", "--sync", "full")
    assert_one_error(result, f"Error: {Path(existing)} already exists; not overwriting it.")
    assert mine.read_text() == "# mine\n"
    assert [p for p in tmp_path.rglob("*.py") if p != mine] == []


def test_make_provider_takes_back_the_module_when_the_test_cannot_be_written(
    sqlite_app, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tests").write_text("")  # a file where the tests directory would go
    result = invoke(sqlite_app, "make-provider", "acme", "--tests-path", "tests/unit")
    assert_one_error(result, f"Error: Cannot write {Path('tests/unit/test_acme.py')}: ")
    assert not (tmp_path / "providers" / "acme.py").exists()


def test_make_provider_names_a_provider_after_an_imported_class_safely(sqlite_app, tmp_path, monkeypatch):
    """The modules import no capitalised name, so a provider called `provider` is `Provider`."""
    monkeypatch.chdir(tmp_path)
    result = invoke(sqlite_app, "make-provider", "provider", "--oauth")
    assert result.exit_code == 0, result.output
    assert '    "provider": "providers.provider:Provider",' in result.output
    module = import_file(tmp_path / "providers" / "provider.py", "generated_provider_clash")
    check_provider_class("provider", module.Provider)
    assert issubclass(module.Provider, fi.Provider) and module.Provider is not fi.Provider


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sync"], "Error: Invalid value for '--sync': it needs a value, one of 'full', 'incremental'."),
        (["--sync", "--webhooks"], "it needs a value, one of 'full', 'incremental'"),
        (["--sync", "daily"], "Invalid value for '--sync': 'daily' is not one of 'full', 'incremental'."),
    ],
)
def test_make_provider_sync_needs_full_or_incremental(sqlite_app, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = invoke(sqlite_app, "make-provider", "acme", *args, "--path", str(tmp_path))
    assert_one_error(result, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Acme", "Error: Provider name 'Acme' must match ^[a-z][a-z0-9_]*$"),
        ("1acme", "must match"),
        ("acme-crm", "must match"),
        ("", "must match"),
        ("class", "Error: Provider name 'class' is a Python keyword; choose another."),
        ("dashboard", "Error: Provider name 'dashboard' is reserved for the package's routes"),
        ("oauth", "is reserved"),
    ],
)
def test_make_provider_rejects_bad_names(sqlite_app, tmp_path, monkeypatch, name, message):
    monkeypatch.chdir(tmp_path)
    result = invoke(sqlite_app, "make-provider", name)
    assert_one_error(result, message)
    assert list(tmp_path.iterdir()) == []


def test_make_provider_path_that_is_a_file_fails(sqlite_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    assert_one_error(invoke(sqlite_app, "make-provider", "acme", "--path", "afile"), "is a file")
    assert_one_error(invoke(sqlite_app, "make-provider", "acme", "--tests-path", "afile"), "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_every_command_has_help(sqlite_app):
    for command in ("install", "list", "health", "stats", "test", "make-provider"):
        result = invoke(sqlite_app, command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output and "--help" in result.output
    shown = " ".join(invoke(sqlite_app, "make-provider", "--help").output.split())
    assert "--sync [full|incremental]" in shown and "--tests-path DIR" in shown


def run_generated_tests(project: Path, test: Path, **env: str) -> str:
    """Run a generated test module as its user would, in a fresh interpreter from the project's
    root (the provider's package importable from there); the pytest summary line."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        cwd=project,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)]), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.fullmatch(r"\d+ passed(, \d+ warnings?)? in [\d.]+s", summary), done.stdout
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("capabilities", COMBINATIONS, ids=combination_id)
def test_make_provider_writes_a_test_that_passes_as_written(sqlite_app, tmp_path, monkeypatch, capabilities):
    """The generated tests/test_NAME.py passes against fakes for every combination of options."""
    monkeypatch.chdir(tmp_path)
    name = provider_name(capabilities)
    result = invoke(sqlite_app, "make-provider", name, *flags(capabilities))
    assert result.exit_code == 0, result.output
    summary = run_generated_tests(tmp_path, Path("tests") / f"test_{name}.py")
    assert int(summary.split()[0]) > 0


@pytest.mark.slow
def test_make_provider_through_the_flask_command(tmp_path):
    """The real `flask` executable in a project of its own, then the tests it wrote."""
    app_file = tmp_path / "app.py"
    app_file.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.helpers.app import make_app\n"
        f"app = make_app('sqlite:///{tmp_path / 'app.db'}')\n"
    )
    flask = [sys.executable, "-m", "flask", "--app", "app", "integrations", "make-provider", "everything"]
    everything = ["--sync", "incremental", "--webhooks", "--health-check", "--oauth"]
    subprocess.run([*flask, *everything], cwd=tmp_path, check=True, capture_output=True)
    register = (
        "from app import app\n"
        "from providers.everything import Everything\n"
        "app.extensions['integrations'].register('everything', Everything)\n"
        "print('registered')\n"
    )
    done = subprocess.run([sys.executable, "-c", register], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip() == "registered", done.stderr
    assert run_generated_tests(tmp_path, Path("tests") / "test_everything.py").startswith("8 passed")
