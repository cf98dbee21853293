"""A real Dovecot for tests: 127.0.0.1 on free ports, throwaway config, user, Maildir and TLS CA in a temp dir."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = mailaudit-test-{port}
listen = 127.0.0.1
protocols = imap
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{root}/tls/server.crt
ssl_key = <{root}/tls/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u:LAYOUT=fs
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
{oauth2}userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service imap-login {{
  {chroot}
  inet_listener imap {{
    address = 127.0.0.1
    port = {plain_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def make_ca(directory: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it; returns the CA file."""
    directory.mkdir(parents=True, exist_ok=True)
    d = str(directory)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=mailaudit test CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (directory / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    return directory / "ca.crt"


class Dovecot:
    """One Dovecot instance; start/stop/restart it, put mail in its Maildir, read its counters."""

    def __init__(
        self, root: Path, user: str = "pat", password: str = "S3cret-Horse-Battery-42!", tokeninfo_url: str = "",
    ) -> None:
        self.root = root
        self.user = user
        self.password = password
        self.port = free_port()
        self.plain_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.ca_file = make_ca(root / "tls")
        if os.geteuid() == 0:
            # Dovecot refuses root for its internal users and for mail: use Debian's users, mail as nobody
            self.mail_uid, self.mail_gid = pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid
            internal_user, login_user = "dovecot", "dovenull"
            internal_group = "dovecot"
            chroot = ""
        else:
            me = pwd.getpwuid(os.geteuid())
            self.mail_uid, self.mail_gid = me.pw_uid, me.pw_gid
            internal_user = login_user = me.pw_name
            internal_group = me.pw_name
            chroot = "chroot ="
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chown(root / "mail", self.mail_uid, self.mail_gid)
        (root / "passwd").write_text(
            f"{user}:{{PLAIN}}{password}:{self.mail_uid}:{self.mail_gid}::{root}/mail/{user}\n"
        )
        oauth2 = ""
        if tokeninfo_url:  # XOAUTH2 too, its tokens checked against a local tokeninfo endpoint
            (root / "oauth2.conf.ext").write_text(f"tokeninfo_url = {tokeninfo_url}\nusername_attribute = email\n")
            oauth2 = ("auth_mechanisms = plain login xoauth2 oauthbearer\npassdb {\n  driver = oauth2\n"
                      f"  mechanisms = xoauth2 oauthbearer\n  args = {root}/oauth2.conf.ext\n}}\n")
        self.conf = root / "dovecot.conf"
        self.conf.write_text(_CONF.format(
            root=root, port=self.port, plain_port=self.plain_port, internal_user=internal_user,
            internal_group=internal_group, login_user=login_user, chroot=chroot, oauth2=oauth2,
        ))
        self.log = root / "dovecot.log"

    def add_user(self, user: str, password: str) -> None:
        """Another mailbox on the same server (Dovecot re-reads the passwd-file when it changes)."""
        with open(self.root / "passwd", "a") as fh:
            fh.write(f"{user}:{{PLAIN}}{password}:{self.mail_uid}:{self.mail_gid}::{self.root}/mail/{user}\n")

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / self.user

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: stop() takes every Dovecot process down with it
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.proc.stderr.read().decode()} {self._log_tail()}")
            if _listening(self.port) and _listening(self.plain_port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"dovecot did not start listening: {self._log_tail()}")

    def stop(self) -> None:
        """Stop the server and every process of it, open IMAP sessions included (as a service manager does)."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(5)
        self.proc = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def body_fetches(self) -> int:
        """Messages whose body was fetched, summed over every finished IMAP session (Dovecot's own count)."""
        return sum(int(n) for n in re.findall(r"body_count=(\d+)", self.log_text()))

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def admin(self):
        """An IMAPClient logged in as the test user, to change the mailbox behind the tool's back."""
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.port, ssl=True, ssl_context=self.ssl_context(), timeout=30)
        client.login(self.user, self.password)
        return client

    def deliver(self, folder: str, messages: list[bytes], seen: bool = False, user: str | None = None) -> None:
        """Write messages straight into the Maildir (fast, like a local delivery agent); Dovecot indexes them."""
        top = self.root / "mail" / (user or self.user)
        base = top if folder == "INBOX" else top / folder
        created = [top, *[p for p in base.parents if top in p.parents], base]
        for sub in ("cur", "new", "tmp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
            created.append(base / sub)
        stamp = int(time.time())
        for i, raw in enumerate(messages):
            name = f"{stamp}.M{i}P{os.getpid()}R{time.monotonic_ns() % 10**9}.test,S={len(raw)}"
            path = base / ("cur" if seen else "new") / (name + (":2,S" if seen else ""))
            path.write_bytes(raw)
            os.chown(path, self.mail_uid, self.mail_gid)
        for d in created:
            os.chown(d, self.mail_uid, self.mail_gid)

    def toml(self, name: str = "test", **extra: object) -> str:
        """An [[accounts]] table for this server (TLS, trusting the test CA), plus `extra` keys."""
        values: dict[str, object] = {
            "name": name, "host": "127.0.0.1", "port": self.port, "security": "ssl", "username": self.user,
            "password_env": "MAILAUDIT_TEST_PASSWORD", "tls_ca_file": str(self.ca_file),
        }
        values.update(extra)
        lines = ["[[accounts]]"]
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def running_dovecot(tokeninfo_url: str = "") -> Iterator[Dovecot]:
    if not Path(DOVECOT).exists():
        pytest.skip("dovecot is not installed (tests/apt-packages.txt lists it; tests/run.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="mailaudit-dovecot-"))
    os.chmod(root, 0o755)  # the mail and login users must reach their files
    server = Dovecot(root, tokeninfo_url=tokeninfo_url)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dovecot]:
    """A running Dovecot with one user; its password is in $MAILAUDIT_TEST_PASSWORD. Torn down after."""
    with running_dovecot() as server:
        monkeypatch.setenv("MAILAUDIT_TEST_PASSWORD", server.password)
        yield server
