"""A real OpenSSH server standing for the remote lab.

Preferred: sshd runs inside a network namespace this fixture creates (a veth pair
with a private /30 made up here), so the "lab" is a second host as far as TCP is
concerned. Fallback: 127.0.0.1 on a free port when namespaces are not permitted.
The server has a throwaway host key; the client a throwaway ed25519 key (plain)
and a passphrase-protected one, both in authorized_keys; known_hosts lists the host.
"""

from __future__ import annotations

import getpass
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
PASSPHRASE = "lwfm-test-Passphrase-7d3f91"   # grepped for in stores and logs by the tests


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def _keygen(path: Path, passphrase: str = "") -> str:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "lwfm-test", "-f", str(path))
    return (path.with_suffix(".pub") if path.suffix else Path(f"{path}.pub")).read_text().strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Netns:
    """A namespace plus a veth pair; only addresses made up here, in 10.231.0.0/16."""

    name: str
    outer: str
    inner: str
    host_ip: str
    lab_ip: str

    @classmethod
    def create(cls) -> "Netns":
        used = _run("ip", "-o", "addr").stdout
        for _ in range(50):
            x = random.randint(1, 250)
            if f"10.231.{x}." not in used:
                break
        tag = f"{os.getpid() % 100000}"
        ns = cls(name=f"lwfm-lab-{tag}", outer=f"lwfo{tag}", inner=f"lwfi{tag}",
                 host_ip=f"10.231.{x}.1", lab_ip=f"10.231.{x}.2")
        try:
            _run("ip", "netns", "add", ns.name)
            _run("ip", "link", "add", ns.outer, "type", "veth", "peer", "name", ns.inner)
            _run("ip", "link", "set", ns.inner, "netns", ns.name)
            _run("ip", "addr", "add", f"{ns.host_ip}/30", "dev", ns.outer)
            _run("ip", "link", "set", ns.outer, "up")
            ex = ("ip", "netns", "exec", ns.name)
            _run(*ex, "ip", "addr", "add", f"{ns.lab_ip}/30", "dev", ns.inner)
            _run(*ex, "ip", "link", "set", ns.inner, "up")
            _run(*ex, "ip", "link", "set", "lo", "up")
        except (subprocess.CalledProcessError, OSError):
            ns.destroy()
            raise
        return ns

    def destroy(self) -> None:
        _run("ip", "link", "del", self.outer, check=False)
        _run("ip", "netns", "del", self.name, check=False)


@dataclass
class SshServer:
    """One sshd; ``stop``/``start`` drop and restore it on the same address and keys."""

    root: Path
    host: str
    port: int
    netns: Netns | None
    user_key: Path
    enc_key: Path
    known_hosts: Path
    host_pub: str
    remote_home: Path
    passphrase: str = PASSPHRASE   # of enc_key; grepped for in stores and logs
    proc: subprocess.Popen | None = None
    mode: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.mode = "netns" if self.netns else "loopback"

    @property
    def config_file(self) -> Path:
        return self.root / "sshd_config"

    def start(self) -> None:
        argv = [SSHD, "-D", "-e", "-f", str(self.config_file)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns.name, *argv]
        log = open(self.root / "sshd.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not come up in 15 s")

    def stop(self) -> None:
        """Kill the listener and every per-connection sshd under it: live sessions drop."""
        if not self.proc:
            return
        pids = _descendants(self.proc.pid)
        for pid in [self.proc.pid, *pids]:
            _cmd = _comm(pid)
            if pid == self.proc.pid or _cmd.startswith("sshd"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait(timeout=10)
        self.proc = None

    def site_config(self, **extra) -> dict:
        """A [sites.lab] table for this server."""
        lwfm_script = Path(sys.executable).with_name("lwfm")
        cfg = {"driver": "ssh", "host": self.host, "port": self.port, "user": getpass.getuser(),
               "key_file": str(self.user_key), "known_hosts": str(self.known_hosts),
               "remote_home": str(self.remote_home), "workdir": str(self.remote_home / "work"),
               "lwfm_command": str(lwfm_script) if lwfm_script.exists() else
               f"{sys.executable} -m lwfm.cli",
               "python_command": sys.executable, "compute_types": ["cpu", "bigmem"]}
        cfg.update(extra)
        return cfg


def _children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(p.name))
    return out


def _descendants(pid: int) -> list[int]:
    kids, todo, out = _children_map(), [pid], []
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _netns_possible() -> bool:
    if os.environ.get("LWFM_TEST_SSH_LOOPBACK"):
        return False
    probe = f"lwfm-probe-{os.getpid()}"
    ok = _run("ip", "netns", "add", probe, check=False).returncode == 0
    _run("ip", "netns", "del", probe, check=False)
    return ok


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> SshServer:
    if not Path(SSHD).exists() or not shutil.which("ssh-keygen"):
        pytest.fail("openssh-server is not installed (apt-get install openssh-server)")
    root = tmp_path_factory.mktemp("sshd")
    os.chmod(root, 0o700)
    _keygen(root / "host_ed25519")
    host_pub = (root / "host_ed25519.pub").read_text().split()
    user_pub = _keygen(root / "id_ed25519")
    enc_pub = _keygen(root / "id_enc", PASSPHRASE)
    (root / "authorized_keys").write_text(f"{user_pub}\n{enc_pub}\n")
    try:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)   # sshd's privilege-separation dir
    except PermissionError:
        pass                                                 # not root: sshd runs unprivileged
    netns = None
    if _netns_possible():
        try:
            netns = Netns.create()
        except (subprocess.CalledProcessError, OSError):
            netns = None
    host, port = (netns.lab_ip, 2222) if netns else ("127.0.0.1", _free_port())
    (root / "sshd_config").write_text(f"""\
Port {port}
ListenAddress {host}
HostKey {root / 'host_ed25519'}
PidFile {root / 'sshd.pid'}
AuthorizedKeysFile {root / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
PrintMotd no
LogLevel INFO
ClientAliveInterval 5
""")
    known = root / "known_hosts"
    known.write_text(f"[{host}]:{port} {host_pub[0]} {host_pub[1]}\n")
    remote_home = root / "lab_home"
    (remote_home / "work").mkdir(parents=True)
    srv = SshServer(root=root, host=host, port=port, netns=netns, user_key=root / "id_ed25519",
                    enc_key=root / "id_enc", known_hosts=known,
                    host_pub=f"{host_pub[0]} {host_pub[1]}", remote_home=remote_home)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if netns:
            netns.destroy()


@pytest.fixture
def live_sshd(sshd: SshServer) -> SshServer:
    """The server, restarted if an earlier test left it stopped."""
    if sshd.proc is None or sshd.proc.poll() is not None:
        sshd.proc = None
        sshd.start()
    return sshd
