"""The drop-folder SFTP server, reached by real clients on loopback: paramiko and Airflow's SFTPHook.

Every client pins the server's host key (docs/reliability.md #11); nothing here uses a policy that
accepts unknown keys.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import asyncssh
import paramiko
import pytest

from yorisoi_kit.servers.sftp import ensure_host_key, serve, serve_in_thread

USER = "partner"
PASSWORD = "test-only-password"  # a test credential, not a secret

MEMBERS = "inbox/pos/members_20261031.csv"  # the POS members snapshot at as_of (CP932)


@pytest.fixture
def drop_folder(synth_xs: Path, tmp_path: Path) -> Path:
    """A copy of the XS brand's drop folder (the SFTP root), a file beside it, and a symlink
    planted inside that points to that file (tests write into the root, so never the original)."""
    root = tmp_path / "sftp"
    shutil.copytree(synth_xs / "sftp", root)
    (tmp_path / "outside.txt").write_text("outside the root\n")
    (root / "inbox" / "escape").symlink_to(tmp_path / "outside.txt")
    return root


@pytest.fixture
def host_key_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "ssh_host_ed25519_key"


@pytest.fixture
def client_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


def _public_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode("ascii").strip()


def _password_only(host_key_path: Path) -> dict:
    return {"username": USER, "password": PASSWORD, "host_key_path": host_key_path}


def _paramiko_key(key: asyncssh.SSHKey) -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key(io.StringIO(key.export_private_key("openssh").decode()))


def _pinned_client(host: str, port: int, pinned_public_line: str) -> paramiko.SSHClient:
    """A paramiko client that trusts exactly one host key for host:port and rejects anything else."""
    client = paramiko.SSHClient()
    algorithm, data = pinned_public_line.split()[:2]
    key = paramiko.Ed25519Key(data=base64.b64decode(data))
    client.get_host_keys().add(f"[{host}]:{port}", algorithm, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


@contextmanager
def _sftp(server, pinned: str | None = None, **auth) -> Iterator[paramiko.SFTPClient]:
    client = _pinned_client(server.host, server.port, pinned or server.host_key_public)
    client.connect(
        server.host,
        server.port,
        username=auth.pop("username", USER),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
        **auth,
    )
    try:
        yield client.open_sftp()
    finally:
        client.close()


def test_host_key_is_generated_once_and_persisted(host_key_path: Path) -> None:
    line = ensure_host_key(host_key_path)
    assert line.startswith("ssh-ed25519 AAAA")
    assert len(line.split()) == 2
    assert ensure_host_key(host_key_path) == line  # read back, not regenerated
    assert stat.S_IMODE(host_key_path.stat().st_mode) == 0o600
    assert Path(f"{host_key_path}.pub").read_text().strip() == line
    assert ensure_host_key(host_key_path.with_name("other_key")) != line


def test_password_login_with_pinned_host_key_lists_and_reads(drop_folder: Path, host_key_path: Path) -> None:
    with serve_in_thread(drop_folder, username=USER, password=PASSWORD, host_key_path=host_key_path) as server:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        assert server.host_key_public == ensure_host_key(host_key_path)
        with _sftp(server, password=PASSWORD) as sftp:
            assert sorted(sftp.listdir("/inbox")) == sorted(os.listdir(drop_folder / "inbox"))
            feeds = sorted(p.name for p in (drop_folder / "inbox").iterdir() if not p.is_symlink())
            assert {"pos", "callcenter", "line"} <= set(feeds)
            checked = 0
            for feed in feeds:
                assert sorted(sftp.listdir(f"/inbox/{feed}")) == sorted(os.listdir(drop_folder / "inbox" / feed))
                for name in sftp.listdir(f"/inbox/{feed}"):
                    if not name.endswith(".manifest.json"):
                        continue
                    with sftp.open(f"/inbox/{feed}/{name}", "rb") as remote:
                        manifest = json.loads(remote.read().decode("utf-8"))
                    with sftp.open(f"/inbox/{feed}/{manifest['file']}", "rb") as remote:
                        data = remote.read()
                    assert len(data) == manifest["bytes"]
                    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
                    checked += 1
            assert checked > 10
            with sftp.open("/" + MEMBERS, "rb") as remote:
                members = remote.read()
            assert members == (drop_folder / MEMBERS).read_bytes()
            header = next(csv.reader(io.StringIO(members.decode("cp932"))))
            assert header[:2] == ["会員番号", "氏名カナ"]
            assert sftp.stat("/" + MEMBERS).st_size == len(members)


def test_public_key_login(drop_folder: Path, host_key_path: Path, client_key: asyncssh.SSHKey) -> None:
    other_key = asyncssh.generate_private_key("ssh-ed25519")
    with serve_in_thread(
        drop_folder, username=USER, authorized_keys=[_public_line(client_key)], host_key_path=host_key_path
    ) as server:
        with _sftp(server, pkey=_paramiko_key(client_key)) as sftp:
            assert "pos" in sftp.listdir("/inbox")
        with pytest.raises(paramiko.AuthenticationException), _sftp(server, pkey=_paramiko_key(other_key)):
            pass
        # The right key for another user name is refused too.
        with (
            pytest.raises(paramiko.AuthenticationException),
            _sftp(server, username="someone", pkey=_paramiko_key(client_key)),
        ):
            pass
        # No password configured: password authentication is not offered at all.
        with pytest.raises(paramiko.AuthenticationException), _sftp(server, password=PASSWORD):
            pass


def test_authorized_keys_file(
    drop_folder: Path, host_key_path: Path, client_key: asyncssh.SSHKey, tmp_path: Path
) -> None:
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(f"# partner key\n{_public_line(client_key)}\n")
    with serve_in_thread(
        drop_folder, username=USER, password=PASSWORD, authorized_keys=authorized, host_key_path=host_key_path
    ) as server:
        with _sftp(server, pkey=_paramiko_key(client_key)) as sftp:
            assert "members_20261031.csv" in sftp.listdir("/inbox/pos")
        with _sftp(server, password=PASSWORD) as sftp:
            assert "members_20261031.csv" in sftp.listdir("/inbox/pos")


def test_wrong_password_or_user_is_refused(drop_folder: Path, host_key_path: Path) -> None:
    with serve_in_thread(drop_folder, username=USER, password=PASSWORD, host_key_path=host_key_path) as server:
        with pytest.raises(paramiko.AuthenticationException), _sftp(server, password="wrong-password"):
            pass
        with pytest.raises(paramiko.AuthenticationException), _sftp(server, password=""):
            pass
        with (
            pytest.raises(paramiko.AuthenticationException),
            _sftp(server, username="root", password=PASSWORD),
        ):
            pass


def test_sftp_only_no_shell_or_exec(drop_folder: Path, host_key_path: Path) -> None:
    with serve_in_thread(drop_folder, username=USER, password=PASSWORD, host_key_path=host_key_path) as server:
        client = _pinned_client(server.host, server.port, server.host_key_public)
        client.connect(
            server.host, server.port, username=USER, password=PASSWORD, look_for_keys=False, allow_agent=False
        )
        try:
            with pytest.raises(paramiko.SSHException):
                client.exec_command("cat /etc/passwd", timeout=5)
        finally:
            client.close()


def test_server_needs_a_credential(drop_folder: Path, host_key_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="password or authorized keys"),
        serve_in_thread(drop_folder, username=USER, password="", host_key_path=host_key_path),
    ):
        pass
    with pytest.raises(ValueError, match="password or authorized keys"):
        serve(drop_folder, "127.0.0.1", 0, USER, None, host_key_path)


def test_client_cannot_escape_the_root(drop_folder: Path, host_key_path: Path) -> None:
    outside = drop_folder.parent / "outside.txt"
    ensure_host_key(host_key_path)
    before = sorted(p.name for p in drop_folder.parent.iterdir())
    with (
        serve_in_thread(drop_folder, username=USER, password=PASSWORD, host_key_path=host_key_path) as server,
        _sftp(server, password=PASSWORD) as sftp,
    ):
        # `..` is clamped at the root: the client's "/" is the drop folder.
        assert sftp.normalize("..") == "/"
        assert sftp.normalize("/../../..") == "/"
        assert sorted(sftp.listdir("../..")) == ["inbox"]
        for path in ("../outside.txt", "/../outside.txt", "inbox/../../outside.txt", str(outside)):
            with pytest.raises(OSError):
                sftp.open(path).read()
        # A symlink planted inside the root that points outside is not followed.
        with pytest.raises(PermissionError):
            sftp.open("/inbox/escape").read()
        with pytest.raises(PermissionError):
            sftp.stat("/inbox/escape")
        # Clients cannot create links (which could point outside).
        with pytest.raises(OSError):
            sftp.symlink(str(outside), "/inbox/link")
        # Writes and renames aimed outside land inside the root.
        with sftp.open("../../written.txt", "w") as remote:
            remote.write("dropped\n")
        sftp.rename("/written.txt", "../../../renamed.txt")
        sftp.mkdir("../made")
    assert (drop_folder / "renamed.txt").read_text() == "dropped\n"
    assert (drop_folder / "made").is_dir()
    assert sorted(p.name for p in drop_folder.parent.iterdir()) == before
    assert outside.read_text() == "outside the root\n"
    assert not (drop_folder / "inbox" / "link").exists()


def test_changed_host_key_is_refused(drop_folder: Path, tmp_path: Path) -> None:
    """docs/reliability.md #11: pin key A, restart the server on the same port with key B: refused."""
    key_a, key_b = tmp_path / "key_a", tmp_path / "key_b"
    with serve_in_thread(drop_folder, username=USER, password=PASSWORD, host_key_path=key_a) as server_a:
        port = server_a.port
        pinned = server_a.host_key_public
        with _sftp(server_a, password=PASSWORD) as sftp:
            assert sftp.listdir("/inbox/pos")
    with serve_in_thread(drop_folder, username=USER, password=PASSWORD, host_key_path=key_b, port=port) as server_b:
        assert server_b.port == port
        assert server_b.host_key_public != pinned
        with pytest.raises(paramiko.BadHostKeyException), _sftp(server_b, pinned=pinned, password=PASSWORD):
            pass
        # A client with no pinned key for this host refuses too (unknown keys are never accepted).
        unknown = paramiko.SSHClient()
        unknown.set_missing_host_key_policy(paramiko.RejectPolicy())
        with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
            unknown.connect(
                server_b.host, port, username=USER, password=PASSWORD, look_for_keys=False, allow_agent=False
            )
        unknown.close()


def _airflow_sftp_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, server, host_key: str) -> None:
    """Define an Airflow connection through AIRFLOW_CONN_<ID> (JSON), with the host key pinned."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "sftp",
                "host": server.host,
                "port": server.port,
                "login": USER,
                "password": PASSWORD,
                "extra": {"host_key": host_key, "no_host_key_check": False},
            }
        ),
    )


def test_airflow_sftp_hook_with_pinned_host_key(
    drop_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    key_a, key_b = tmp_path / "key_a", tmp_path / "key_b"
    with serve_in_thread(drop_folder, username=USER, password=PASSWORD, host_key_path=key_a) as server:
        port = server.port
        pinned = server.host_key_public
        _airflow_sftp_connection(monkeypatch, "yorisoi_drop_test", server, pinned)
        hook = SFTPHook(ssh_conn_id="yorisoi_drop_test", conn_retry_attempts=1)
        assert hook.no_host_key_check is False
        assert hook.host_key is not None
        try:
            assert "members_20261031.csv" in hook.list_directory("/inbox/pos")
            local = tmp_path / "members.csv"
            hook.retrieve_file("/" + MEMBERS, str(local))
            assert local.read_bytes() == (drop_folder / MEMBERS).read_bytes()
            upload = tmp_path / "upload.csv"
            upload.write_text("a,b\n1,2\n")
            hook.create_directory("/outbox")
            hook.store_file("/outbox/upload.csv", str(upload))
            assert (drop_folder / "outbox" / "upload.csv").read_text() == "a,b\n1,2\n"
        finally:
            hook.close_conn()

    # Same port, another host key: the hook with key A pinned refuses to connect.
    with serve_in_thread(drop_folder, username=USER, password=PASSWORD, host_key_path=key_b, port=port):
        hook = SFTPHook(ssh_conn_id="yorisoi_drop_test", conn_retry_attempts=1)
        with pytest.raises(paramiko.BadHostKeyException):
            hook.list_directory("/inbox/pos")


def test_serve_runs_in_the_foreground_until_sigterm(drop_folder: Path, host_key_path: Path) -> None:
    """`serve` (what the CLI calls) blocks, serves, and exits cleanly on SIGTERM."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = (
        "import os, sys\n"
        "from yorisoi_kit.servers.sftp import serve\n"
        "serve(sys.argv[1], '127.0.0.1', int(sys.argv[2]), 'partner', os.environ['TEST_SFTP_PASSWORD'],"
        " sys.argv[3])\n"
    )
    env = {**os.environ, "TEST_SFTP_PASSWORD": PASSWORD}
    process = subprocess.Popen([sys.executable, "-c", script, str(drop_folder), str(port), str(host_key_path)], env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "server exited early"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        server = SimpleNamespace(host="127.0.0.1", port=port, host_key_public=ensure_host_key(host_key_path))
        with _sftp(server, password=PASSWORD) as sftp:
            assert "members_20261031.csv" in sftp.listdir("/inbox/pos")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
