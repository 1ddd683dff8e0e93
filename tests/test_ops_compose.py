"""compose.yaml is a valid Compose file and says what operators rely on: three NATS nodes in
one cluster flushing every write, authentication on, two or more engines on an R3 stream with
/readyz health checks, and the effect handler. Checked with `docker compose config` where the
machine has it, else against the Compose JSON schema shipped in check-jsonschema; the NATS
config inside it is checked by nats-server itself (`-t`), with a real operator-mode include."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import nats_server_binary

pytestmark = pytest.mark.integration  # runs docker compose or check-jsonschema, and nats-server -t
ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
BIN = Path(sys.executable).parent


def has_compose_plugin() -> bool:
    docker = shutil.which("docker")
    return docker is not None and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    if has_compose_plugin():
        return subprocess.run(["docker", "compose", "-f", str(path), "config", "-q"], capture_output=True, text=True)
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def test_compose_file_is_valid_and_a_broken_one_is_not(tmp_path: Path) -> None:
    result = validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("healthcheck:", "healthchek:", 1))
    assert validate(broken).returncode != 0  # the validator really reads the file


def test_three_nats_nodes_two_engines_and_the_effect_handler(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nats = [s for s in services.values() if str(s.get("image", "")).startswith("nats:")]
    assert len(nats) == 3
    assert {s["environment"]["NATS_NAME"] for s in nats} == {"nats1", "nats2", "nats3"}
    engines = [s for s in services.values() if s.get("command", [None])[0] == "serve"]
    assert len(engines) >= 2
    for engine in engines:
        command = engine["command"]
        assert command[command.index("--replicas") + 1] == "3"
        assert "--creds" in command
        assert "/readyz" in " ".join(engine["healthcheck"]["test"])
        assert engine["restart"] == "on-failure"
        assert set(engine["depends_on"]) == {"nats1", "nats2", "nats3"}
    effects = [s for s in services.values() if s.get("command", [None])[0] == "effects"]
    assert len(effects) == 1 and "--creds" in effects[0]["command"]
    url = services["engine1"]["environment"]["NATS_URL"]
    assert url.split(",") == ["nats://nats1:4222", "nats://nats2:4222", "nats://nats3:4222"]


def test_nats_config_is_valid_for_nats_server_with_sync_always_monitoring_and_auth(compose: dict[str, Any],
                                                                                   tmp_path: Path) -> None:
    content = compose["configs"]["nats_conf"]["content"].replace("$$", "$")  # compose's escape
    for needed in ("sync_interval: always", "http: 0.0.0.0:8222", "include auth/nats/auth.conf", "routes:"):
        assert needed in content
    # the include is what `agentledger auth init` writes into the auth volume mounted beside it
    deployment = Deployment.open(tmp_path / "auth", "ledger", "LEDGER")
    (tmp_path / "etc" / "auth" / "nats").mkdir(parents=True)
    (tmp_path / "etc" / "auth" / "nats" / "auth.conf").write_text(deployment.server_config(tmp_path / "jwt"))
    conf = tmp_path / "etc" / "nats.conf"
    conf.write_text(content.replace("store_dir: /data", f"store_dir: {tmp_path / 'data'}"))
    result = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True,
                            env={**os.environ, "NATS_NAME": "nats1"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_nats_url_may_list_a_clusters_servers() -> None:
    assert EngineConfig(nats_url="nats://a:4222, nats://b:4222,").servers == ["nats://a:4222", "nats://b:4222"]
