"""One paramiko connection to a site, verified against known_hosts, that heals itself.

Why a wrapper: the Manager polls remote jobs for hours while networks and sshd come
and go. Every remote call goes through :meth:`Connection.execute` or
:meth:`Connection.sftp_call`, which reconnect with a bounded backoff when the
transport is gone. Host keys are checked with a reject-by-default policy; trusting
a new key is an explicit opt-in. Passphrases are read from the environment at
connect time, handed to paramiko, and kept nowhere else (not logged, not stored).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import paramiko

from lwfm.errors import AuthError, ConfigError, SiteError

log = logging.getLogger("lwfm.sites.ssh")
T = TypeVar("T")

#: config keys that would put a secret into lwfm.toml; refused with a pointer to *_env
_SECRET_KEYS = ("password", "passphrase", "key_passphrase")
_DROPS = (paramiko.SSHException, EOFError, OSError, socket.timeout)


@dataclass
class SshConfig:
    """The connection part of a ``[sites.NAME]`` table."""

    site: str
    host: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    trust_new_host_key: bool = False
    passphrase_env: str = "LWFM_SSH_PASSPHRASE"
    connect_timeout: float = 10.0
    reconnect_timeout: float = 60.0
    poll_reconnect_timeout: float = 5.0

    @classmethod
    def from_table(cls, site: str, t: dict[str, Any]) -> "SshConfig":
        for k in _SECRET_KEYS:
            if k in t:
                raise ConfigError(
                    f"[sites.{site}] must not hold a secret ({k!r}); put it in an environment "
                    f"variable and name that variable with passphrase_env (default LWFM_SSH_PASSPHRASE)")
        if not t.get("host"):
            raise ConfigError(f"[sites.{site}] needs host = \"...\" (the SSH server of the site)")
        try:
            port = int(t.get("port", 22))
        except (TypeError, ValueError):
            raise ConfigError(f"[sites.{site}] port must be an integer") from None
        trust = t.get("trust_new_host_key", False)
        if not isinstance(trust, bool):
            raise ConfigError(f"[sites.{site}] trust_new_host_key must be true or false")
        return cls(site=site, host=str(t["host"]), port=port, user=t.get("user"),
                   key_file=t.get("key_file"),
                   known_hosts=str(t.get("known_hosts", "~/.ssh/known_hosts")),
                   trust_new_host_key=trust,
                   passphrase_env=str(t.get("passphrase_env", "LWFM_SSH_PASSPHRASE")),
                   connect_timeout=float(t.get("connect_timeout", 10.0)),
                   reconnect_timeout=float(t.get("reconnect_timeout", 60.0)),
                   poll_reconnect_timeout=float(t.get("poll_reconnect_timeout", 5.0)))

    @property
    def host_label(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts).expanduser()


class _UnknownHostKey(Exception):
    def __init__(self, key: paramiko.PKey):
        self.key = key


class _RejectPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse, but keep the key so the error can show its fingerprint."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(key)


class _TrustNewPolicy(paramiko.MissingHostKeyPolicy):
    """Explicit opt-in: accept a host seen for the first time and remember it."""

    def __init__(self, path: Path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.warning("trusted new host key for %s (%s) and added it to %s",
                    hostname, key.fingerprint, self.path)


class Connection:
    """A lazily opened, self-healing SSH connection (thread-safe)."""

    def __init__(self, cfg: SshConfig):
        self.cfg = cfg
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self._sftp_lock = threading.Lock()   # one SFTP request stream at a time
        self.connects = 0            # how many times we (re)connected; tests look at it

    # -- connecting ---------------------------------------------------------------------
    def _connect_once(self, timeout: float) -> paramiko.SSHClient:
        c = self.cfg
        client = paramiko.SSHClient()
        kh = c.known_hosts_path
        if kh.exists():
            try:
                client.load_host_keys(str(kh))
            except (OSError, paramiko.SSHException) as e:
                raise ConfigError(f"cannot read known_hosts {kh}: {e}") from None
        client.set_missing_host_key_policy(_TrustNewPolicy(kh) if c.trust_new_host_key
                                           else _RejectPolicy())
        secret = os.environ.get(c.passphrase_env) or None
        kw: dict[str, Any] = dict(hostname=c.host, port=c.port, username=c.user,
                                  timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
        if c.key_file:
            key = Path(c.key_file).expanduser()
            if not key.exists():
                raise ConfigError(f"[sites.{c.site}] key_file {key} does not exist")
            kw.update(key_filename=str(key), allow_agent=False, look_for_keys=False,
                      passphrase=secret)
        else:
            kw.update(allow_agent=True, look_for_keys=True, passphrase=secret)
        try:
            client.connect(**kw)
        except _UnknownHostKey as e:
            client.close()
            raise AuthError(
                f"site {c.site!r}: host {c.host_label} is not in {kh} (its {e.key.get_name()} key "
                f"is {e.key.fingerprint}). Check that fingerprint with the lab, then add the key "
                f"(ssh-keyscan -p {c.port} {c.host} >> {kh}) or set trust_new_host_key = true in "
                f"[sites.{c.site}] to accept it once.") from None
        except paramiko.BadHostKeyException as e:
            client.close()
            raise AuthError(
                f"site {c.site!r}: host key of {c.host_label} CHANGED (got {e.key.fingerprint}, "
                f"{kh} expects {e.expected_key.fingerprint}); refusing to connect. If the lab "
                f"really replaced its key, remove the old line from {kh}.") from None
        except paramiko.PasswordRequiredException:
            client.close()
            raise AuthError(
                f"site {c.site!r}: key {c.key_file} is encrypted; export its passphrase in "
                f"${c.passphrase_env} (it is never stored or logged)") from None
        except paramiko.SSHException as e:
            client.close()
            if not isinstance(e, paramiko.AuthenticationException) and \
                    "authentication" not in str(e).lower():
                raise          # a network or protocol failure: the caller may retry
            raise AuthError(
                f"site {c.site!r}: authentication as {c.user or 'the current user'} at "
                f"{c.host_label} failed ({type(e).__name__}); check key_file, the agent, the "
                f"passphrase in ${c.passphrase_env} and the server's authorized_keys") from None
        finally:
            secret = None  # noqa: F841  (drop our reference to the passphrase at once)
        tr = client.get_transport()
        if tr is not None:
            tr.set_keepalive(15)
        self.connects += 1
        return client

    def alive(self) -> bool:
        tr = self._client.get_transport() if self._client else None
        return bool(tr and tr.is_active())

    def client(self, budget: float | None = None) -> paramiko.SSHClient:
        """The live client, (re)connecting with backoff for at most ``budget`` seconds
        (default ``reconnect_timeout``; status polls pass a short one so a lab outage
        never stalls the manager loop for long)."""
        budget = self.cfg.reconnect_timeout if budget is None else budget
        with self._lock:
            if self.alive():
                return self._client  # type: ignore[return-value]
            self._drop()
            deadline = time.monotonic() + budget
            delay, last = 0.2, None
            while True:
                left = deadline - time.monotonic()
                try:
                    self._client = self._connect_once(max(0.5, min(self.cfg.connect_timeout, left)))
                    return self._client
                except (AuthError, ConfigError):
                    raise
                except _DROPS as e:
                    last = e
                if time.monotonic() + delay > deadline:
                    raise SiteError(
                        f"site {self.cfg.site!r}: cannot reach {self.cfg.host_label} "
                        f"({type(last).__name__}: {last}); retried for {budget:.0f} s") from None
                log.info("ssh %s unreachable (%s); retrying in %.1f s", self.cfg.host_label,
                         type(last).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _drop(self) -> None:
        for o in (self._sftp, self._client):
            try:
                if o is not None:
                    o.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may fail any way
                pass
        self._sftp = self._client = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- calls --------------------------------------------------------------------------
    def _retrying(self, what: str, fn: Callable[[], T], attempts: int = 4) -> T:
        """Run ``fn``; on a dropped connection reconnect and run it again.

        Only idempotent operations go through here (see the launch script in ssh.py).
        """
        for i in range(attempts):
            try:
                return fn()
            except (AuthError, ConfigError):
                raise
            except _DROPS as e:
                if isinstance(e, (FileNotFoundError, PermissionError)):
                    raise
                if i == attempts - 1:
                    raise SiteError(f"site {self.cfg.site!r}: {what} failed: "
                                    f"{type(e).__name__}: {e}") from None
                log.info("ssh %s dropped during %s (%s); reconnecting", self.cfg.host_label,
                         what, type(e).__name__)
                with self._lock:
                    self._drop()
        raise AssertionError("unreachable")

    def execute(self, command: str, *, timeout: float = 120.0, budget: float | None = None,
                stdin: bytes = b"") -> tuple[int, str, str]:
        """Run a shell command remotely; return (exit status, stdout, stderr).

        ``stdin`` carries what must not show in the lab's process list (job environments).
        """
        def go() -> tuple[int, str, str]:
            client = self.client(budget)
            chan = client.get_transport().open_session(timeout=self.cfg.connect_timeout)
            chan.settimeout(timeout)
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out = _read_all(chan.makefile("rb"))
            err = _read_all(chan.makefile_stderr("rb"))
            rc = chan.recv_exit_status()
            chan.close()
            if rc == -1:
                raise EOFError("channel closed without an exit status")
            return rc, out.decode(errors="replace"), err.decode(errors="replace")
        return self._retrying("a remote command", go)

    def check(self, command: str, what: str, *, timeout: float = 120.0,
              budget: float | None = None, stdin: bytes = b"") -> str:
        """Run ``command``; a non-zero exit becomes a SiteError that quotes stderr."""
        rc, out, err = self.execute(command, timeout=timeout, budget=budget, stdin=stdin)
        if rc != 0:
            raise SiteError(f"site {self.cfg.site!r}: {what} failed (exit {rc}): "
                            f"{(err or out).strip()[-800:]}")
        return out

    def sftp_call(self, what: str, fn: Callable[[paramiko.SFTPClient], T]) -> T:
        def go() -> T:
            with self._lock:
                client = self.client()
                if self._sftp is None or self._sftp.get_channel().closed:
                    self._sftp = client.open_sftp()
                sftp = self._sftp
            with self._sftp_lock:
                return fn(sftp)
        return self._retrying(what, go)


def _read_all(f) -> bytes:
    chunks = []
    while True:
        b = f.read(1 << 16)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
