"""node.toml is a model read and written as TOML; a database belongs to one node; files stay private.

Issue 16 §6 (configuration as data) and issue 15 §5 (databases shared by accident), §6 (files).
"""

from __future__ import annotations

import os
import stat
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from gsomia.errors import ConfigError
from gsomia.node import Node, init_node_dir, load_config
from gsomia.node._config import NodeSettings, set_endpoint, update_settings
from gsomia.testing import FakeClock


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_node_toml_round_trips_through_the_model(tmp_path: Path) -> None:
    config = init_node_dir(tmp_path / "jpn", "jpn", endpoint="http://127.0.0.1:9001")
    raw = tomllib.loads((tmp_path / "jpn" / "node.toml").read_text(encoding="utf-8"))["node"]
    assert NodeSettings.model_validate(raw).party == "JPN"
    assert config.party == "JPN"
    assert config.endpoint == "http://127.0.0.1:9001"
    assert config.envelope_lifetime == timedelta(hours=24)
    assert "# the URL partners reach" in (tmp_path / "jpn" / "node.toml").read_text(encoding="utf-8")
    changed = update_settings(tmp_path / "jpn", envelope_lifetime_seconds=3600, sender_interval_seconds=1.5)
    assert changed.envelope_lifetime == timedelta(hours=1)
    assert changed.sender_interval == 1.5
    assert set_endpoint(tmp_path / "jpn", "https://jpn.example:8443").endpoint == "https://jpn.example:8443"
    assert load_config(tmp_path / "jpn").envelope_lifetime == timedelta(hours=1)  # the edit kept the rest


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("max_clock_skew_seconds = 1.5", "max_clock_skew_seconds"),
        ("max_payload_bytes = true", "max_payload_bytes"),
        ("envelope_lifetime_seconds = 5", "envelope_lifetime_seconds"),
        ('endpoint = "ftp://x"', "endpoint"),
        ('colour = "red"', "colour"),
        ('database_url = "postgresql+psycopg://kor:hunter2@db/kor"', "password"),
        ('tls_cert = "tls.crt"', "tls_cert, tls_key and tls_ca are given together"),
    ],
)
def test_a_bad_setting_is_named(tmp_path: Path, line: str, needle: str) -> None:
    init_node_dir(tmp_path, "JPN")
    path = tmp_path / "node.toml"
    key = line.split(" =")[0]
    kept = [x for x in path.read_text(encoding="utf-8").splitlines() if not x.startswith(f"{key} =")]
    path.write_text("\n".join([*kept, line]) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=needle):
        load_config(tmp_path)


def test_the_database_password_is_never_written_to_node_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GSOMIA_DATABASE_PASSWORD", raising=False)
    url = "postgresql+psycopg://kor:s3cret@db.example/gsomia?options=-csearch_path%3Dkor"
    config = init_node_dir(tmp_path, "KOR", url)
    text = (tmp_path / "node.toml").read_text(encoding="utf-8")
    assert "s3cret" not in text
    assert 'database_url = "postgresql+psycopg://kor@db.example/gsomia' in text
    assert (tmp_path / "database.password").read_text(encoding="utf-8") == "s3cret"
    assert _mode(tmp_path / "database.password") == 0o600
    assert "s3cret" in config.database_url  # the node itself connects with it
    assert "s3cret" not in config.database_name
    monkeypatch.setenv("GSOMIA_DATABASE_PASSWORD", "from-env")
    assert ":from-env@" in load_config(tmp_path).database_url


def test_the_database_chosen_at_init_is_kept_whatever_the_environment_says_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("GSOMIA_DATABASE_URL", first)
    assert init_node_dir(tmp_path / "kor", "KOR").database_url == first
    monkeypatch.delenv("GSOMIA_DATABASE_URL")
    assert load_config(tmp_path / "kor").database_url == first  # no silent switch to an empty SQLite file
    monkeypatch.setenv("GSOMIA_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    assert load_config(tmp_path / "kor").database_url == first


def test_a_second_node_refuses_to_start_on_a_database_another_node_holds(tmp_path: Path) -> None:
    """The attack of issue 15 §5: a KOR node initialised on JPN's database sees nothing of JPN's."""
    url = f"sqlite:///{tmp_path / 'one.db'}"
    jpn = Node(init_node_dir(tmp_path / "jpn", "JPN", url), clock=FakeClock())
    jpn.add_person(None, {"id": "tanaka", "name": "Tanaka", "nationality": "JPN", "roles": ["analyst"]})
    jpn.close()
    kor_config = init_node_dir(tmp_path / "kor", "KOR", url)
    with pytest.raises(ConfigError, match=r"belongs to another node \(JPN"):
        Node(kor_config, clock=FakeClock())
    twin = init_node_dir(tmp_path / "jpn2", "JPN", url)  # the same party, another node (another key)
    with pytest.raises(ConfigError, match="give each node its own database"):
        Node(twin, clock=FakeClock())
    again = Node(load_config(tmp_path / "jpn"), clock=FakeClock())  # the owner still opens it
    assert [p.id for p in again.people(None)] == ["tanaka"]
    again.close()


def test_files_and_directories_are_private_and_links_are_never_followed(tmp_path: Path) -> None:
    """Symlinks planted where node files are written replace nothing outside the node."""
    target = tmp_path / "victim.txt"
    target.write_text("precious", encoding="utf-8")
    directory = tmp_path / "node"
    directory.mkdir(mode=0o755)
    os.symlink(target, directory / "node.key")  # planted before init
    with pytest.raises(ConfigError, match="exists already"):
        init_node_dir(directory, "JPN")
    os.unlink(directory / "node.key")
    config = init_node_dir(directory, "JPN")
    node = Node(config, clock=FakeClock())
    node.close()
    assert _mode(directory) == 0o700
    for name in ("node.toml", "node.key", "gsomia.db", "gsomia.db-wal"):  # (the keys live in the store)
        if name != "gsomia.db-wal" or (directory / name).exists():
            assert _mode(directory / name) == 0o600, name
    os.unlink(directory / "node.toml")
    (directory / "node.toml").symlink_to(target)  # planted after: the next write replaces the link
    with pytest.raises(ConfigError):
        set_endpoint(directory, "http://127.0.0.1:1")  # the link's target is not a node.toml
    assert target.read_text(encoding="utf-8") == "precious"


def test_net_up_with_one_postgresql_url_gives_each_node_its_own_schema(
    tmp_path: Path, postgres_status: str | None
) -> None:
    """`gsomia net up --database-url URL` (or GSOMIA_DATABASE_URL): three nodes, each its own schema."""
    from tests.conftest import POSTGRES_URL, network_schemas, require_postgres

    from gsomia.demo import network

    require_postgres(postgres_status)
    with network_schemas(tmp_path / "net"):
        urls = network.schema_urls(POSTGRES_URL, tmp_path / "net")
        members = network.build(tmp_path / "net", database_urls=urls)
        nodes = network.open_nodes(members, FakeClock())
        try:
            assert len({n.config.database_url for n in nodes.values()}) == 3
            for party, node in nodes.items():
                assert {p.nationality for p in node.people(None)} == {party}  # only its own people
                assert node.audit.verify().ok
        finally:
            for node in nodes.values():
                node.close()
        with pytest.raises(ConfigError, match="PostgreSQL URL"):
            network.schema_urls(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "net")
