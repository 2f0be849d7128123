"""A real ``redis-server`` for tests: started on a free port, killed, restarted, frozen.

Tests never mock Redis and never touch a system Redis: the session gets its own server
(fixture ``redis_server``), each test a flushed database (``redis_url``), and fault tests
start a dedicated :class:`RedisServer` so that killing or freezing it affects no one else.

Redis Cluster: :class:`LocalCluster` starts six ``redis-server --cluster-enabled yes`` on
free loopback ports, joins them with ``redis-cli --cluster create --cluster-replicas 1``
(three primaries, three replicas) and waits until every node reports ``cluster_state:ok``
and every replica is in sync. The session shares one (``redis_cluster``; tests get it
flushed through ``cluster_url``); fault tests start their own (``own_cluster``), with a
short ``cluster-node-timeout`` so that a killed primary is replaced within seconds.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Container, Iterator, Sequence
from pathlib import Path

import pytest
import redis

__all__ = [
    "LocalCluster",
    "RedisServer",
    "cluster_url",
    "free_port",
    "own_cluster",
    "redis_cluster",
    "redis_server",
    "redis_url",
]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
_START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port(taken: Container[int] = ()) -> int:
    """A free port ``p`` whose cluster bus port ``p + 10000`` is free too, not in ``taken``
    (the ports already picked for nodes not started yet).

    Both lie below the kernel's ephemeral range (32768 and up), so no outgoing
    connection takes them between this check and the server's start.
    """
    while True:
        port = random.randrange(20000, 22768)
        if port not in taken and _bindable(port) and _bindable(port + 10000):
            return port


def _command(port: int, command: bytes, timeout: float = 0.5) -> bytes:
    """Send one inline command and return its reply: a line, or a bulk string's bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(command + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            reply += chunk
        if not reply.startswith(b"$") or reply.startswith(b"$-1"):
            return reply
        head, _, body = reply.partition(b"\r\n")
        size = int(head[1:])
        while len(body) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            body += chunk
        return body[:size]


class RedisServer:
    """One ``redis-server`` subprocess without persistence, bound to 127.0.0.1."""

    def __init__(
        self, port: int | None = None, *, durable: bool = False, options: Sequence[str] = ()
    ) -> None:
        self.port = port or free_port()
        # durable: an append-only file fsynced on every write, so data survives a kill.
        self._data_dir = tempfile.mkdtemp(prefix="nexios-redis-") if durable else None
        self._options = list(options)
        self._process: subprocess.Popen[bytes] | None = None
        self._frozen = False

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        if self.running:
            return self
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> None:
        """Start the process without waiting for it to answer (see :meth:`start`)."""
        self._process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self._data_dir else "no",
                "--appendfsync",
                "always",
                "--dir",
                self._data_dir or tempfile.gettempdir(),
                "--loglevel",
                "warning",
                *self._options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._frozen = False

    def wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"redis-server on port {self.port} exited: {stderr.strip()}")
            try:
                if _command(self.port, b"PING").startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.005)

    def flush(self) -> None:
        reply = _command(self.port, b"FLUSHALL")
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL failed: {reply!r}")

    def stop(self) -> None:
        """Terminate the server (thawing it first) and wait for it to exit."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if self._frozen:
                self.thaw()
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_pipes(process)
        self._process = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything gracefully."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self._close_pipes(process)
        self._process = None
        self._frozen = False

    def restart(self) -> None:
        """Kill the server and start a new one on the same port."""
        self.kill()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open (the kernel still accepts) but nothing answers."""
        assert self._process is not None and self.running
        self._process.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)
        self._frozen = False

    @staticmethod
    def _close_pipes(process: subprocess.Popen[bytes]) -> None:
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server shared by the whole session; tests must not kill or freeze it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty database on the session's server."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    return redis_server.url()


class LocalCluster:
    """A Redis Cluster of ``primaries`` primaries with one replica each, on 127.0.0.1.

    ``node_timeout`` (ms) is ``cluster-node-timeout``: how long a primary may be silent
    before its replica takes over. Nodes keep no data on disk, like :class:`RedisServer`.
    """

    def __init__(
        self, primaries: int = 3, *, node_timeout: int = 5000, failover_ready: bool = False
    ) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="nexios-cluster-"))
        # failover_ready: wait until every node knows every replica as one (a primary
        # votes for a replica's takeover only then), which gossip takes ~2 s to spread
        self._failover_ready = failover_ready
        self.nodes: list[RedisServer] = []
        for _ in range(2 * primaries):
            port = free_cluster_port(taken={node.port for node in self.nodes})
            options = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self._dir / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                str(node_timeout),
                "--dir",
                str(self._dir),
                # replicas sync at once (the default waits 5 s for more replicas)
                "--repl-diskless-sync-delay",
                "0",
                # a replica may take over however long its link was down (the tests cut
                # it on purpose): failover must not depend on how busy the machine is
                "--cluster-replica-validity-factor",
                "0",
            ]
            self.nodes.append(RedisServer(port, options=options))

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, nodes: int = 2) -> str:
        """``redis+cluster://`` naming the first ``nodes`` nodes (the rest are found)."""
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:nodes])
        return f"redis+cluster://{seeds}"

    def start(self) -> LocalCluster:
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            command = [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "1"]
            created = subprocess.run([*command, "--cluster-yes"], capture_output=True, timeout=30)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout!r}")
            self.wait_healthy(len(self.nodes))
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, nodes: int, timeout: float = 20.0) -> None:
        """Wait until ``nodes`` running nodes see ``cluster_state:ok`` and agree on the
        slots, and every replica is in sync with its primary."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                waiting_for = self._waiting_for(nodes)
            except OSError as error:
                waiting_for = f"a node's answer ({error})"
            if waiting_for is None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Redis Cluster did not become healthy in {timeout:g} s: "
                    f"still waiting for {waiting_for}"
                )
            time.sleep(0.02)

    def _waiting_for(self, nodes: int) -> str | None:
        """What keeps the cluster from being healthy (None: nothing)."""
        running = [node for node in self.nodes if node.running]
        if len(running) < nodes:
            return f"{nodes} running nodes ({len(running)} are)"
        views = set()
        for node in running:
            info = _command(node.port, b"CLUSTER INFO").decode()
            if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                return f"cluster_state:ok on {node.port}"
            views.add(self._view(node.port))
            replication = _command(node.port, b"INFO replication").decode()
            if "role:slave" in replication and "master_link_status:up" not in replication:
                return f"replica {node.port} to sync with its primary"
        return None if len(views) == 1 else f"the nodes to agree ({len(views)} views)"

    def _view(self, port: int) -> frozenset[tuple[str, str]]:
        """What a node says about the others: who serves which slots (and, when
        ``failover_ready``, which node replicates which)."""
        view = set()
        for line in _command(port, b"CLUSTER NODES").decode().splitlines():
            fields = line.split()
            address = fields[1].split("@")[0]
            if "fail" in fields[2]:
                continue
            if fields[8:]:
                view.add((address, " ".join(sorted(fields[8:]))))
            elif self._failover_ready:
                view.add((address, fields[3]))
        return frozenset(view)

    def primaries(self) -> list[RedisServer]:
        """The running nodes that are primaries now, in port order of ``nodes``."""
        found = []
        for node in self.nodes:
            if node.running and "role:master" in _command(node.port, b"INFO replication").decode():
                found.append(node)
        return found

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """The running replica of ``primary``."""
        primary_id = _command(primary.port, b"CLUSTER MYID").decode()
        for node in self.nodes:
            if node.running and node is not primary:
                replication = _command(node.port, b"CLUSTER NODES").decode()
                for line in replication.splitlines():
                    fields = line.split()
                    if "myself" in fields[2] and fields[3] == primary_id:
                        return node
        raise RuntimeError(f"no replica of {primary.port}")

    def primary_of(self, key: bytes) -> RedisServer:
        """The running primary that serves ``key``'s slot."""
        for node in self.primaries():
            reply = _command(node.port, b"EXISTS " + key)
            if not reply.startswith(b"-MOVED") and not reply.startswith(b"-ASK"):
                return node
        raise RuntimeError(f"no primary serves {key!r}")

    def move_slot(self, slot: int, target: RedisServer) -> None:
        """Reshard: move ``slot`` and its keys to the primary ``target`` (as
        ``redis-cli --cluster reshard`` does: IMPORTING/MIGRATING, MIGRATE, NODE)."""
        clients = {node.port: redis.Redis(port=node.port) for node in self.primaries()}
        try:
            ids = {port: client.cluster("MYID").decode() for port, client in clients.items()}
            source = next(port for port, client in clients.items() if self._serves(client, slot))
            clients[target.port].cluster("SETSLOT", slot, "IMPORTING", ids[source])
            clients[source].cluster("SETSLOT", slot, "MIGRATING", ids[target.port])
            while keys := clients[source].cluster("GETKEYSINSLOT", slot, 100):
                clients[source].migrate("127.0.0.1", target.port, keys, 0, 5000)
            for port in (target.port, source, *clients):
                clients[port].cluster("SETSLOT", slot, "NODE", ids[target.port])
        finally:
            for client in clients.values():
                client.close()

    @staticmethod
    def _serves(client: redis.Redis, slot: int) -> bool:
        myself = client.cluster("MYID").decode()
        for start, end, owner, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return bool(owner[2].decode() == myself)
        return False

    def flush(self) -> None:
        for node in self.primaries():
            reply = _command(node.port, b"FLUSHALL")
            if not reply.startswith(b"+OK"):
                raise RuntimeError(f"FLUSHALL failed on {node.port}: {reply!r}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A Redis Cluster shared by the whole session; tests must not kill or reshard it."""
    with LocalCluster() as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> str:
    """The URL of the session's cluster, emptied for this test."""
    redis_cluster.flush()
    return redis_cluster.url()


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of the test's own, free to be killed and resharded; a killed primary is
    replaced by its replica after about 1 s (``cluster-node-timeout`` 1000)."""
    with LocalCluster(node_timeout=1000, failover_ready=True) as cluster:
        yield cluster
