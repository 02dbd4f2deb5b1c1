"""Layered configuration: order, environment and flags, inheritance, errors, the ae table."""

from __future__ import annotations

import json
import re
from dataclasses import FrozenInstanceError, is_dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from webpacs.backends import BLOBS, INDEXES
from webpacs.cli.main import main
from webpacs.config import SECTIONS, AeEntry, Settings, isolated, load
from webpacs.errors import ConfigError


def snake(key: str) -> str:
    return re.sub("([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "home", tmp_path / "cwd"


def settings(
    dirs: tuple[Path, Path],
    files: list[Path] | None = None,
    env: dict[str, str] | None = None,
    flags: dict[str, Any] | None = None,
) -> Settings:
    home, cwd = dirs
    return load(files or [], flags, environ=env or {}, home=home, cwd=cwd)


def test_defaults(dirs: tuple[Path, Path]) -> None:
    s = settings(dirs)
    assert s.dimse.ae_title == "WEBPACS"
    assert s.dimse.port == 11112
    assert s.dimse.host == "127.0.0.1"
    assert s.dimse.restrict_calling_ae is None  # automatic: see dimse.context
    assert s.dimse.tls.enabled is False and s.server.tls.enabled is False
    assert s.query_ae == s.proxy_ae == ""
    assert s.ae_table == {}
    assert s.sources[("dimse", "port")] == "default"


def test_typed_sections_follow_the_layers(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    """Every leaf of the layered values is a typed field of its section, under its
    snake_case name; an int given for a float setting is a float."""
    f = write(tmp_path / "c.json5", "{server: {qidoMaxResults: 7, deriveInterval: 3}}")
    s = settings(dirs, [f], env={"WEBPACS_S3_ENDPOINTURL": "http://s3"})
    assert s.server.qido_max_results == 7
    assert s.server.derive_interval == 3.0 and isinstance(s.server.derive_interval, float)
    assert s.s3.endpoint_url == "http://s3"
    for section in SECTIONS:
        typed = getattr(s, section)
        for key, value in s.values[section].items():
            expected = tuple(value) if isinstance(value, list) else value  # lists held as tuples
            got = getattr(typed, snake(key))
            if is_dataclass(got):  # a nested section (server.tls): its keys, typed
                got = {k: getattr(got, snake(k)) for k in value}
            assert got == expected, (section, key)
    with pytest.raises(FrozenInstanceError):
        s.server.port = 1  # type: ignore[misc]  # the point: sections are read-only


def test_backend_names_are_the_registrys(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    f = write(tmp_path / "c.json5", "{static: {index: 'nosuch'}}")
    with pytest.raises(ConfigError) as e:
        settings(dirs, [f])
    assert f"static.index must be one of {', '.join(INDEXES)}" in str(e.value)
    for name in BLOBS:
        assert settings(dirs, flags={"blobs": name}).blobs == name


def test_isolated_ignores_home_cwd_and_environment(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, cwd = dirs
    write(home / ".webpacs.json5", "{dimse: {port: 1}}")
    write(cwd / "webpacs.json5", "{dimse: {port: 2}}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("WEBPACS_DIMSE_PORT", "3")
    assert load().dimse.port == 3
    s = isolated({"dimse": {"aeTitle": "ISO"}})
    assert (s.dimse.port, s.dimse.ae_title) == (11112, "ISO")
    assert isolated(s.values).dimse == s.dimse


def test_layering_order(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    home, cwd = dirs
    h = write(home / ".webpacs.json5", "{dimse: {port: 1, aeTitle: 'HOME', host: 'h'}}")
    c = write(cwd / "webpacs.json5", "{dimse: {port: 2, aeTitle: 'CWD'}}")
    one = write(tmp_path / "one.json5", "{dimse: {port: 3, maxAssociations: 3}}")
    two = write(tmp_path / "two.json5", "// later -c files win\n{dimse: {port: 4}}")
    s = settings(dirs, [one, two])
    assert s.get("dimse", "port") == 4 and s.sources[("dimse", "port")] == str(two)
    assert s.get("dimse", "maxAssociations") == 3
    assert s.get("dimse", "aeTitle") == "CWD" and s.sources[("dimse", "aeTitle")] == str(c)
    assert s.get("dimse", "host") == "h" and s.sources[("dimse", "host")] == str(h)
    s = settings(dirs, [one, two], env={"WEBPACS_DIMSE_PORT": "5"})
    assert s.get("dimse", "port") == 5
    assert s.sources[("dimse", "port")] == "environment WEBPACS_DIMSE_PORT"
    s = settings(dirs, [one, two], env={"WEBPACS_DIMSE_PORT": "5"}, flags={"dimse": {"port": 6}})
    assert s.get("dimse", "port") == 6 and s.sources[("dimse", "port")] == "command line"
    # a flag that was not given (None) does not override
    s = settings(dirs, [one], env={"WEBPACS_DIMSE_PORT": "5"}, flags={"dimse": {"port": None}})
    assert s.get("dimse", "port") == 5


def test_environment_types(dirs: tuple[Path, Path]) -> None:
    env = {
        "WEBPACS_DIMSE_RESTRICTCALLINGAE": "true",
        "WEBPACS_DIMSE_ACSETIMEOUT": "2.5",
        "WEBPACS_DIMSE_AETITLE": "FROM_ENV",
        "WEBPACS_DIMSE_DATADIR": "/srv/dimse",
    }
    s = settings(dirs, env=env)
    assert s.get("dimse", "restrictCallingAe") is True
    assert s.get("dimse", "acseTimeout") == 2.5
    assert s.get("dimse", "aeTitle") == "FROM_ENV"
    assert s.for_service("dimse").data_dir == Path("/srv/dimse")
    with pytest.raises(ConfigError, match="environment WEBPACS_DIMSE_PORT.*dimse.port must be int"):
        settings(dirs, env={"WEBPACS_DIMSE_PORT": "'x'"})


def test_service_sections_inherit(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    f = write(tmp_path / "c.json5", "{dataDir: '/shared', dimse: {dataDir: '/dimse-only'}}")
    s = settings(dirs, [f])
    dimse, server, static = (s.for_service(n) for n in ("dimse", "server", "static"))
    assert dimse.data_dir == Path("/dimse-only")
    assert dimse.sources[("dataDir",)] == f"{f} (as dimse.dataDir)"
    assert server.data_dir == static.data_dir == Path("/shared")
    assert server.get("server", "dataDir") == "/shared"
    assert server.sources[("server", "dataDir")] == f"{f} (inherited from dataDir)"
    assert dimse.get("index") == "sqlite" and dimse.get("dimse", "index") == "sqlite"
    assert s.get("dimse", "index") is None  # the layered value itself: unset = inherit
    with pytest.raises(ValueError):
        s.for_service("nope")


def test_unknown_key_names_file_and_key(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    f = write(tmp_path / "bad.json5", "{dimse: {aeTitel: 'X'}}")
    with pytest.raises(ConfigError) as e:
        settings(dirs, [f])
    assert str(f) in str(e.value) and "dimse.aeTitel" in str(e.value)
    g = write(tmp_path / "bad2.json5", "{ae: {pacs: {title: 'P', host: 'h', port: 1, ip: 'x'}}}")
    with pytest.raises(ConfigError) as e:
        settings(dirs, [g])
    assert str(g) in str(e.value) and "ae.pacs.ip" in str(e.value)


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("{dimse: {port: '11112'}}", "dimse.port", "int"),
        ("{dimse: {restrictCallingAe: 1}}", "dimse.restrictCallingAe", "bool"),
        ("{dimse: {tls: {cert: 1}}}", "dimse.tls.cert", "str"),
        ("{server: {tls: {requireClientCert: 'yes'}}}", "server.tls.requireClientCert", "bool"),
        ("{ae: {pacs: {title: 'P', host: 'h', port: 1, tls: 'yes'}}}", "ae.pacs.tls", "bool"),
        ("{dimse: {dataDir: 3}}", "dimse.dataDir", "str"),
        ("{queryAe: false}", "queryAe", "str"),
        ("{ae: {pacs: {title: 'P', host: 'h', port: '104'}}}", "ae.pacs.port", "int"),
        ("{ae: {pacs: {title: 'P', host: 'h', port: true}}}", "ae.pacs.port", "int"),
        (
            "{ae: {pacs: {title: 'P', host: 'h', port: 1, services: 'find'}}}",
            "ae.pacs.services",
            "list",
        ),
    ],
)
def test_bad_type_names_file_key_and_type(
    dirs: tuple[Path, Path], tmp_path: Path, text: str, key: str, expected: str
) -> None:
    f = write(tmp_path / "bad.json5", text)
    with pytest.raises(ConfigError) as e:
        settings(dirs, [f])
    message = str(e.value)
    assert message.startswith(str(f)) and f"{key} must be {expected}" in message


def test_ae_table(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    home, _ = dirs
    write(
        home / ".webpacs.json5",
        """{ae: {
            pacs: {title: 'HOSPITAL_PACS', host: 'pacs.example', port: 104,
                   description: 'the hospital PACS', services: ['find', 'move']},
            ws1: {host: '10.0.0.7', port: 11112},
        }, queryAe: 'pacs'}""",
    )
    later = write(tmp_path / "c.json5", "{ae: {ws1: {port: 4242}}}")  # merged key by key
    s = settings(dirs, [later])
    assert s.ae("pacs") == AeEntry(
        title="HOSPITAL_PACS",
        host="pacs.example",
        port=104,
        description="the hospital PACS",
        services=("find", "move"),
    )
    ws1 = s.ae("ws1")
    assert (ws1.title, ws1.host, ws1.port) == ("ws1", "10.0.0.7", 4242)
    assert ws1.services == ("find", "move", "get", "store")
    assert s.sources[("ae", "ws1", "port")] == str(later)
    assert s.sources[("ae", "ws1", "host")] == str(home / ".webpacs.json5")
    assert s.ae_by_title("HOSPITAL_PACS") == s.ae("pacs")
    assert s.ae_by_title("NOBODY") is None
    env = {"WEBPACS_AE": "{pacs: {port: 11113}}"}
    assert settings(dirs, env=env).ae("pacs").port == 11113
    with pytest.raises(ConfigError, match="no AE named 'nope'"):
        s.ae("nope")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{ae: {p: {title: 'P'}}}", "ae.p needs 'host'"),
        ("{ae: {p: {title: 'P', host: 'h', port: 0}}}", "ae.p.port must be 1..65535"),
        ("{ae: {p: {title: 'ÄÖ', host: 'h', port: 1}}}", "printable ASCII"),
        (
            "{ae: {p: {title: 'X', host: 'h', port: 1}, q: {title: 'X', host: 'h', port: 2}}}",
            "also the title of ae.p",
        ),
        ("{ae: {p: {title: 'P', host: 'h', port: 1, services: ['push']}}}", "services must be"),
        ("{ae: {'a very long name for an AE': {host: 'h', port: 1}}}", "needs a 'title'"),
        ("{proxyAe: 'missing'}", "proxyAe 'missing' is not a name in the ae table"),
        ("{dimse: {aeTitle: 'SEVENTEEN_CHARS_X'}}", "at most 16 characters"),
        ("{ae: []}", "ae must be an object"),
    ],
)
def test_ae_errors(dirs: tuple[Path, Path], tmp_path: Path, text: str, match: str) -> None:
    f = write(tmp_path / "bad.json5", text)
    with pytest.raises(ConfigError, match=match) as e:
        settings(dirs, [f])
    assert str(f) in str(e.value)


def test_config_show(tmp_path: Path) -> None:
    f = write(
        tmp_path / "c.json5",
        "{dimse: {aeTitle: 'SHOWN', dataDir: '/d'},"
        " ae: {pacs: {title: 'PACS', host: 'h', port: 104}}}",
    )
    runner = CliRunner()
    env = {"COLUMNS": "250", "HOME": str(tmp_path / "home"), "WEBPACS_DIMSE_PORT": "11999"}
    r = runner.invoke(main, ["config", "show", "-c", str(f)], env=env)
    assert r.exit_code == 0, r.output
    lines = {line.split("│")[1].strip(): line for line in r.output.splitlines() if "│" in line}
    assert "'SHOWN'" in lines["dimse.aeTitle"] and str(f) in lines["dimse.aeTitle"]
    assert "11999" in lines["dimse.port"] and "WEBPACS_DIMSE_PORT" in lines["dimse.port"]
    assert "'PACS'" in lines["ae.pacs.title"] and "104" in lines["ae.pacs.port"]
    assert "(inherits dataDir)" in lines["server.dataDir"]
    r = runner.invoke(main, ["config", "show", "-c", str(f), "--service", "dimse"], env=env)
    lines = {line.split("│")[1].strip(): line for line in r.output.splitlines() if "│" in line}
    assert "'/d'" in lines["dataDir"] and "as dimse.dataDir" in lines["dataDir"]
    # secrets are neither shown nor in a repr of the settings (DESIGN rule 12)
    env["WEBPACS_COUCHDB_PASSWORD"] = "hunter2-secret"
    r = runner.invoke(main, ["config", "show", "-c", str(f)], env=env)
    lines = {line.split("│")[1].strip(): line for line in r.output.splitlines() if "│" in line}
    assert "hunter2" not in r.output and "'***'" not in lines["couchdb.password"]
    assert lines["couchdb.password"].split("│")[2].strip() == "***"
    assert "''" in lines["s3.secretAccessKey"]
    s = load(
        [f], environ={"WEBPACS_S3_SECRETACCESSKEY": "hunter2-secret"}, home=tmp_path, cwd=tmp_path
    )
    assert s.s3.secret_access_key == "hunter2-secret" and "hunter2" not in repr(s)
    bad = write(tmp_path / "bad.json5", "{dimse: {nope: 1}}")
    r = runner.invoke(main, ["config", "show", "-c", str(bad)], env=env)
    assert r.exit_code == 2 and "dimse.nope" in r.output and str(bad) in r.output


def test_config_show_masks_secrets_and_shows_the_data_directory(tmp_path: Path) -> None:
    """``config show`` prints secrets as *** (also a password inside the PostgreSQL URL)
    and the data directory really used (the default resolved, ``~`` expanded)."""
    home = tmp_path / "home"
    env = {
        "COLUMNS": "250",
        "HOME": str(home),
        "XDG_DATA_HOME": "",
        "WEBPACS_S3_SECRETACCESSKEY": "s3-secret-4711",
        "WEBPACS_COUCHDB_PASSWORD": "couch-secret-4711",
        "WEBPACS_POSTGRESQL_URL": "postgresql://pacs:pg-secret-4711@db.example:5432/webpacs",
    }
    runner = CliRunner()
    r = runner.invoke(main, ["config", "show"], env=env)
    assert r.exit_code == 0, r.output
    assert "4711" not in r.output
    lines = {line.split("│")[1].strip(): line for line in r.output.splitlines() if "│" in line}
    value = {k: line.split("│")[2].strip() for k, line in lines.items()}
    assert value["s3.secretAccessKey"] == "***" and value["couchdb.password"] == "***"
    assert value["postgresql.url"] == "'postgresql://pacs:***@db.example:5432/webpacs'"
    assert value["dataDir"] == repr(str(home / ".local/share/webpacs"))
    r = runner.invoke(main, ["config", "show", "--data-dir", "~/pacs-data"], env=env)
    lines = {line.split("│")[1].strip(): line for line in r.output.splitlines() if "│" in line}
    assert lines["dataDir"].split("│")[2].strip() == repr(str(home / "pacs-data"))


# --------------------------------------------------------------------------- TLS settings


def _pem_files(tmp_path: Path) -> dict[str, str]:
    out = {}
    for key in ("cert", "key", "ca"):
        (tmp_path / f"{key}.pem").write_text("-----BEGIN PLACEHOLDER-----\n")
        out[key] = str(tmp_path / f"{key}.pem")
    return out


def test_tls_settings_typed_layered_and_shown(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    pem = _pem_files(tmp_path)
    f = write(
        tmp_path / "c.json5",
        f"{{dimse: {{tls: {{cert: '{pem['cert']}', key: '{pem['key']}'}}}},"
        f" ae: {{pacs: {{host: 'h', port: 104, tls: true}}}}}}",
    )
    s = settings(dirs, [f], env={"WEBPACS_DIMSE_TLS_CA": pem["ca"],
                                 "WEBPACS_DIMSE_TLS_REQUIRECLIENTCERT": "true"})  # fmt: skip
    assert s.dimse.tls.enabled and s.dimse.tls.cert == pem["cert"]
    assert s.dimse.tls.ca == pem["ca"] and s.dimse.tls.require_client_cert is True
    assert s.sources[("dimse", "tls", "ca")] == "environment WEBPACS_DIMSE_TLS_CA"
    assert s.ae("pacs").tls is True
    assert s.ae_table["pacs"].tls is True
    assert (
        settings(dirs, [write(tmp_path / "d.json5", "{ae: {p: {host: 'h', port: 1}}}")]).ae("p").tls
        is False
    )
    # worker processes get the values: the same typed settings come out
    assert isolated(s.values).dimse.tls == s.dimse.tls


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"cert": "CERT"}, "server.tls needs both cert and key, not only cert"),
        ({"key": "KEY"}, "server.tls needs both cert and key, not only key"),
        ({"cert": "CERT", "key": "KEY", "requireClientCert": True}, "requireClientCert needs ca"),
        ({"cert": "CERT", "key": "missing.pem"}, "server.tls.key: no such file"),
        ({"ca": "CA"}, "server.tls.ca without cert"),
    ],
)
def test_tls_settings_checked_at_load(
    dirs: tuple[Path, Path], tmp_path: Path, tls: dict[str, Any], message: str
) -> None:
    pem = _pem_files(tmp_path)
    given = {k: pem[v.lower()] if isinstance(v, str) and v.isupper() else v for k, v in tls.items()}
    if given.get("key") == "missing.pem":
        given["key"] = str(tmp_path / "missing.pem")
    f = write(tmp_path / "c.json5", json.dumps({"server": {"tls": given}}))
    with pytest.raises(ConfigError) as e:
        settings(dirs, [f])
    assert str(e.value).startswith(str(f)) and message in str(e.value)


def test_missing_dimse_certificate_named_with_its_origin(dirs: tuple[Path, Path]) -> None:
    env = {
        "WEBPACS_DIMSE_TLS_CERT": "/nonexistent/c.pem",
        "WEBPACS_DIMSE_TLS_KEY": "/nonexistent/k",
    }
    with pytest.raises(ConfigError) as e:
        settings(dirs, env=env)
    assert "environment WEBPACS_DIMSE_TLS_CERT" in str(e.value)
    assert "dimse.tls.cert: no such file '/nonexistent/c.pem'" in str(e.value)


def test_restrict_calling_ae_null_and_explicit(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    f = write(tmp_path / "c.json5", "{dimse: {restrictCallingAe: false}}")
    assert settings(dirs, [f]).dimse.restrict_calling_ae is False
    g = write(tmp_path / "g.json5", "{dimse: {restrictCallingAe: null}}")
    assert settings(dirs, [f, g]).dimse.restrict_calling_ae is None
    env = {"WEBPACS_DIMSE_RESTRICTCALLINGAE": "true"}
    assert settings(dirs, [f], env=env).dimse.restrict_calling_ae is True


def test_config_show_lists_tls_paths(tmp_path: Path) -> None:
    """Certificate and key paths are shown (they are not secrets; the key's content is
    never read by ``config show``)."""
    pem = _pem_files(tmp_path)
    f = write(
        tmp_path / "c.json5",
        json.dumps({"server": {"tls": {"cert": pem["cert"], "key": pem["key"]}}}),
    )
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nSECRETKEYBYTES\n")
    env = {"COLUMNS": "250", "HOME": str(tmp_path / "home")}
    r = CliRunner().invoke(main, ["config", "show", "-c", str(f)], env=env)
    assert r.exit_code == 0, r.output
    lines = {line.split("│")[1].strip(): line for line in r.output.splitlines() if "│" in line}
    assert pem["key"] in lines["server.tls.key"] and "SECRETKEYBYTES" not in r.output
    assert "False" in lines["dimse.tls.requireClientCert"]
