"""An SFTP server for the drop folder (`yorisoi serve sftp`), built on asyncssh.

Partners (POS, call centre, LINE, web, ESP exports) drop files into `DIR/sftp/inbox/<feed>/`;
the pipeline reads them over SFTP exactly as it would from a real partner server. The server:

* is chrooted to one root folder: every client path is resolved (symlinks included) and must
  stay inside the root, so neither ``../`` nor a symlink planted in the folder leads outside;
  clients cannot create links;
* authenticates one user, by password and/or public key (OpenSSH ``authorized_keys`` lines),
  and offers SFTP only (no shell, exec, SCP or port forwarding);
* has an ed25519 host key generated once and persisted (mode 0600), so clients can pin it
  (docs/reliability.md #11: a client that pinned the key refuses a server with any other key).

Credentials are parameters; the CLI reads them from the environment.

Example (tests)::

    with serve_in_thread(root, username="partner", password=pw, host_key_path=key) as server:
        connect(server.host, server.port, pinned=server.host_key_public)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import signal
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import asyncssh

log = logging.getLogger(__name__)

HOST_KEY_ALGORITHM = "ssh-ed25519"

AuthorizedKeys = str | os.PathLike[str] | Sequence[str]
"""A path to an OpenSSH ``authorized_keys`` file, or a sequence of public key lines."""


# --------------------------------------------------------------------------------------------
# Host key
# --------------------------------------------------------------------------------------------


def _public_key_line(key: asyncssh.SSHKey) -> str:
    """The OpenSSH public key line of `key` without comment: ``"ssh-ed25519 AAAA..."``."""
    algorithm, data = key.export_public_key("openssh").decode("ascii").split()[:2]
    return f"{algorithm} {data}"


def ensure_host_key(path: str | os.PathLike[str]) -> str:
    """Return the server's host key, generating and persisting it on first use.

    :param path: where the private key lives (OpenSSH format, mode 0600). If the file is missing,
        a new ed25519 key is generated and written there atomically, together with
        ``<path>.pub``; if it exists, it is read and never replaced, so the key stays stable
        across restarts and clients can pin it.
    :returns: the public key as an OpenSSH line, ``"ssh-ed25519 AAAA..."`` (no comment), the
        value to pin in a client's known hosts or in an Airflow SFTP connection's ``host_key``.
    """
    return _public_key_line(_load_or_create_host_key(Path(path)))


def _load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    if path.exists():
        if path.stat().st_mode & 0o077:
            log.warning("SFTP host key %s is readable by other users: chmod 600 it", path)
        return asyncssh.read_private_key(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = asyncssh.generate_private_key(HOST_KEY_ALGORITHM, comment="yorisoi-sftp-host-key")
    private = key.export_private_key("openssh")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(private)
            out.flush()
            os.fsync(out.fileno())
        try:
            # Link, not rename: if another process created the key meanwhile, keep theirs.
            os.link(tmp, path)
        except FileExistsError:
            return asyncssh.read_private_key(path)
    finally:
        tmp.unlink(missing_ok=True)
    Path(f"{path}.pub").write_text(_public_key_line(key) + "\n", encoding="ascii")
    log.info("generated SFTP host key %s", path)
    return key


# --------------------------------------------------------------------------------------------
# SFTP: chroot that also resolves symlinks
# --------------------------------------------------------------------------------------------


class _ChrootSFTPServer(asyncssh.SFTPServer):
    """asyncssh's virtual chroot, hardened: the resolved path must stay inside the root.

    asyncssh's own chroot normalises ``..`` but follows symlinks that already exist inside the
    root; here any path whose real location is outside the root is refused, and clients cannot
    create symbolic or hard links.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel, root: bytes) -> None:
        super().__init__(chan, chroot=root)
        self._root = os.path.realpath(root)

    def map_path(self, path: bytes) -> bytes:
        local = super().map_path(path)
        real = os.path.realpath(local)
        if real != self._root and not real.startswith(self._root + b"/"):
            raise asyncssh.SFTPPermissionDenied("Path outside the SFTP root")
        return local

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("Links are not supported")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("Links are not supported")


# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------


def _read_authorized_keys(authorized_keys: AuthorizedKeys | None) -> asyncssh.SSHAuthorizedKeys | None:
    if authorized_keys is None:
        return None
    if isinstance(authorized_keys, str | os.PathLike):
        text = Path(authorized_keys).read_text(encoding="utf-8")
    else:
        text = "\n".join(authorized_keys)
    if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        return None
    return asyncssh.import_authorized_keys(text)


class _DropFolderAuth(asyncssh.SSHServer):
    """One user; password and/or public key; every other user is refused."""

    def __init__(
        self,
        username: str,
        password: str | None,
        authorized_keys: asyncssh.SSHAuthorizedKeys | None,
        connections: set[asyncssh.SSHServerConnection],
    ) -> None:
        self._username = username
        self._password = password
        self._authorized_keys = authorized_keys
        self._connections = connections
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        # Keys are offered only to the configured user; others can still try a password (and fail),
        # so the answer does not reveal which user names exist.
        if self._conn is not None and self._authorized_keys is not None and self._is_user(username):
            self._conn.set_authorized_keys(self._authorized_keys)
        return True

    def _is_user(self, username: str) -> bool:
        return hmac.compare_digest(username.encode("utf-8"), self._username.encode("utf-8"))

    def password_auth_supported(self) -> bool:
        return self._password is not None

    def validate_password(self, username: str, password: str) -> bool:
        if self._password is None:
            return False
        user_ok = self._is_user(username)
        password_ok = hmac.compare_digest(password.encode("utf-8"), self._password.encode("utf-8"))
        return user_ok and password_ok


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    """A running SFTP server, as yielded by :func:`serve_in_thread`.

    :param host: the address it listens on.
    :param port: the TCP port it listens on (the real one when 0 was asked for).
    :param host_key_public: its host key as an OpenSSH line, ``"ssh-ed25519 AAAA..."``, to pin.
    :param root: the folder clients see as ``/``.
    :param username: the one user allowed in.
    """

    host: str
    port: int
    host_key_public: str
    root: Path
    username: str


async def _start(
    root: Path,
    host: str,
    port: int,
    username: str,
    password: str | None,
    authorized_keys: AuthorizedKeys | None,
    host_key_path: str | os.PathLike[str],
) -> tuple[asyncssh.SSHAcceptor, set[asyncssh.SSHServerConnection], str]:
    root = Path(root).resolve(strict=True)
    if not root.is_dir():
        raise NotADirectoryError(f"SFTP root is not a folder: {root}")
    if not username:
        raise ValueError("username is required")
    if password == "":
        password = None  # an empty password never logs anyone in
    keys = _read_authorized_keys(authorized_keys)
    if password is None and keys is None:
        raise ValueError("configure a password or authorized keys: no way to log in otherwise")

    host_key = _load_or_create_host_key(Path(host_key_path))
    root_bytes = os.fsencode(root)
    connections: set[asyncssh.SSHServerConnection] = set()
    acceptor = await asyncssh.listen(
        host,
        port,
        server_host_keys=[host_key],
        server_factory=lambda: _DropFolderAuth(username, password, keys, connections),
        sftp_factory=lambda chan: _ChrootSFTPServer(chan, root_bytes),
        allow_scp=False,
        authorized_client_keys=None,
        x509_trusted_certs=None,
        agent_forwarding=False,
        x11_forwarding=False,
        login_timeout=30,
        keepalive_interval=30,
    )
    return acceptor, connections, _public_key_line(host_key)


async def _stop(acceptor: asyncssh.SSHAcceptor, connections: set[asyncssh.SSHServerConnection]) -> None:
    acceptor.close()
    for conn in list(connections):
        conn.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(acceptor.wait_closed(), timeout=5)
    for conn in list(connections):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.wait_closed(), timeout=5)


@contextlib.contextmanager
def serve_in_thread(
    root: str | os.PathLike[str],
    *,
    username: str,
    password: str | None = None,
    authorized_keys: AuthorizedKeys | None = None,
    host_key_path: str | os.PathLike[str],
    port: int = 0,
) -> Iterator[RunningServer]:
    """Run the SFTP server on 127.0.0.1 in a background thread (its own event loop).

    :param root: the drop folder; clients see it as ``/`` and cannot leave it.
    :param username: the one user allowed to log in.
    :param password: that user's password; None (or empty) disables password authentication.
    :param authorized_keys: public keys allowed for that user: a path to an OpenSSH
        ``authorized_keys`` file or a sequence of public key lines; None disables key auth.
    :param host_key_path: the server's private host key; generated (ed25519) if missing.
    :param port: TCP port; 0 picks a free one (read it from the yielded ``.port``).
    :yields: a :class:`RunningServer` with ``.host``, ``.port`` and ``.host_key_public``.
        Leaving the block closes the listener and every open session, then stops the thread.
    :raises ValueError: neither a password nor authorized keys were given.
    """
    loop = asyncio.new_event_loop()
    started: Future[tuple[asyncssh.SSHAcceptor, set[asyncssh.SSHServerConnection], str]] = Future()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            result = loop.run_until_complete(
                _start(Path(root), "127.0.0.1", port, username, password, authorized_keys, host_key_path)
            )
        except BaseException as exc:  # reported to the caller's thread
            started.set_exception(exc)
            return
        started.set_result(result)
        loop.run_forever()

    thread = threading.Thread(target=run, name="yorisoi-sftp", daemon=True)
    thread.start()
    try:
        acceptor, connections, public = started.result(timeout=30)
    except BaseException:
        thread.join(timeout=5)
        loop.close()
        raise
    sockname = acceptor.sockets[0].getsockname()
    server = RunningServer(
        host=sockname[0],
        port=sockname[1],
        host_key_public=public,
        root=Path(root).resolve(),
        username=username,
    )
    log.info("SFTP server on %s:%d, host key %s", server.host, server.port, public)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(_stop(acceptor, connections), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=15)
        with contextlib.suppress(RuntimeError):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def serve(
    root: str | os.PathLike[str],
    host: str,
    port: int,
    username: str,
    password: str | None,
    host_key_path: str | os.PathLike[str],
    authorized_keys: AuthorizedKeys | None = None,
) -> None:
    """Run the SFTP server in the foreground until SIGINT or SIGTERM (`yorisoi serve sftp`).

    :param root: the drop folder (``DIR/sftp``); clients see it as ``/`` and cannot leave it.
    :param host: address to listen on (``127.0.0.1`` unless the server must be reachable).
    :param port: TCP port (0 picks a free one; it is logged).
    :param username: the one user allowed to log in.
    :param password: that user's password; None (or empty) disables password authentication.
    :param host_key_path: the server's private host key; generated (ed25519) if missing. Its
        public line is logged and written to ``<host_key_path>.pub`` for clients to pin.
    :param authorized_keys: public keys allowed for that user: a path to an OpenSSH
        ``authorized_keys`` file or a sequence of public key lines; None disables key auth.
    :raises ValueError: neither a password nor authorized keys were given.
    """

    async def main() -> None:
        acceptor, connections, public = await _start(
            Path(root), host, port, username, password, authorized_keys, host_key_path
        )
        sockname = acceptor.sockets[0].getsockname()
        log.info("SFTP server on %s:%d serving %s, host key %s", sockname[0], sockname[1], root, public)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await _stop(acceptor, connections)
            log.info("SFTP server stopped")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
