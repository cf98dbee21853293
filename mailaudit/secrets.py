"""Credentials for IMAP login: password_command, password_env, the system keyring, OAuth2 tokens. Never logged."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from mailaudit.config import AccountConfig, Config, data_dir
from mailaudit.errors import AuthError, ConfigError, SourceUnavailableError

log = logging.getLogger(__name__)

KEYRING_SERVICE = "mailaudit"
COMMAND_TIMEOUT_S = 120  # a PassCmd may wait for a GPG pinentry
HTTP_TIMEOUT_S = 30
REFRESH_MARGIN_S = 120  # refresh an access token this long before it expires


def fetch_password(account: AccountConfig) -> str:
    """The account's password from its one configured source; an AuthError says which source failed."""
    who = f"account '{account.name}'"
    if account.password_command:
        return _run_password_command(account, who)
    if account.password_env:
        value = os.environ.get(account.password_env, "")
        if not value:
            raise AuthError(f"{who}: ${account.password_env} is not set or empty; export the password there "
                            "(password_env) or pick another password source")
        return value
    if account.password_keyring:
        keyring = _keyring(who)
        try:
            value = keyring.get_password(KEYRING_SERVICE, account.name)
        except Exception as exc:  # every backend raises its own kinds
            raise AuthError(f"{who}: the system keyring failed ({type(exc).__name__}); check that it is unlocked") \
                from None
        if not value:
            raise AuthError(f"{who}: no password in the system keyring; run `mailaudit auth {account.name}` "
                            "to store it")
        return value
    raise ConfigError(f"{who}: no password source; set password_command, password_env or password_keyring")


def _run_password_command(account: AccountConfig, who: str) -> str:
    cmd = list(account.password_command)
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ConfigError(f"{who}: password_command {cmd[0]!r} not found; check password_command") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthError(f"{who}: password_command {cmd[0]!r} failed ({type(exc).__name__}); run it by hand") from None
    if res.returncode != 0:
        # stderr names the problem (e.g. a GPG error); stdout might hold a secret, so it is never shown
        why = res.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        raise AuthError(f"{who}: password_command {cmd[0]!r} exited with status {res.returncode}"
                        + (f" ({why[0][:200]})" if why else "") + "; run it by hand to check")
    # like mbsync's PassCmd: the first line of the output, without its line end
    value = res.stdout.decode("utf-8", "replace").split("\n", 1)[0].rstrip("\r")
    if not value:
        raise AuthError(f"{who}: password_command {cmd[0]!r} printed nothing; run it by hand to check")
    return value


def _keyring(who: str):  # the keyring module, imported only when configured
    try:
        import keyring
    except ImportError:
        raise ConfigError(f"{who}: password_keyring needs the 'keyring' package; pip install keyring") from None
    return keyring


def save_keyring_password(account: AccountConfig, password: str) -> None:
    keyring = _keyring(f"account '{account.name}'")
    try:
        keyring.set_password(KEYRING_SERVICE, account.name, password)
    except Exception as exc:
        raise AuthError(f"account '{account.name}': the system keyring refused the password "
                        f"({type(exc).__name__}); check that a keyring is installed and unlocked") from None


# --- OAuth2 (XOAUTH2, e.g. Gmail) -------------------------------------------------------------------------


def token_path(account: AccountConfig) -> Path:
    return data_dir() / "tokens" / f"{account.name}.json"


def fetch_access_token(account: AccountConfig, force_refresh: bool = False, now: float | None = None) -> str:
    """A valid access token: the cached one, else refreshed with the stored refresh token (and cached again)."""
    now = time.time() if now is None else now
    path = token_path(account)
    who = f"account '{account.name}'"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuthError(f"{who}: no OAuth2 token yet; run `mailaudit auth {account.name}` once") from None
    except (OSError, ValueError):
        raise AuthError(f"{who}: the OAuth2 token file {path} is unreadable; run `mailaudit auth {account.name}` "
                        "again") from None
    if not force_refresh and data.get("access_token") and data.get("expires_at", 0) > now + REFRESH_MARGIN_S:
        return str(data["access_token"])
    if not data.get("refresh_token"):
        raise AuthError(f"{who}: the OAuth2 token file has no refresh token; run `mailaudit auth {account.name}` again")
    form = {"grant_type": "refresh_token", "refresh_token": data["refresh_token"],
            "client_id": account.oauth2_client_id}
    if account.oauth2_client_secret:
        form["client_secret"] = account.oauth2_client_secret
    answer = _post_token(account, form)
    data["access_token"] = answer["access_token"]
    data["expires_at"] = now + int(answer.get("expires_in", 3600))
    if answer.get("refresh_token"):  # some providers rotate it
        data["refresh_token"] = answer["refresh_token"]
    _write_private(path, data)
    log.debug("%s: access token refreshed", who)
    return str(data["access_token"])


def _post_token(account: AccountConfig, form: dict[str, str]) -> dict:
    import urllib.error
    import urllib.parse
    import urllib.request

    who = f"account '{account.name}'"
    req = urllib.request.Request(
        account.oauth2_token_url, data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            answer = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            error = str(json.loads(exc.read().decode("utf-8")).get("error", ""))
        except (ValueError, OSError, AttributeError):
            error = ""
        if error == "invalid_grant":
            raise AuthError(f"{who}: the OAuth2 token has expired or was revoked; run `mailaudit auth "
                            f"{account.name}` again") from None
        if error in ("invalid_client", "unauthorized_client"):
            raise AuthError(f"{who}: the OAuth2 provider refused the client ({error}); check oauth2_client_id "
                            "and oauth2_client_secret") from None
        raise AuthError(f"{who}: the OAuth2 token endpoint answered HTTP {exc.code} {error}; run `mailaudit auth "
                        f"{account.name}` again") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceUnavailableError(f"{who}: cannot reach the OAuth2 token endpoint {account.oauth2_token_url} "
                                     f"({reason}); check the network") from None
    except ValueError:
        raise AuthError(f"{who}: the OAuth2 token endpoint sent no JSON; check oauth2_token_url") from None
    if not isinstance(answer, dict) or not answer.get("access_token"):
        raise AuthError(f"{who}: the OAuth2 token endpoint sent no access token; run `mailaudit auth "
                        f"{account.name}` again")
    return answer


def _write_private(path: Path, data: dict) -> None:
    """Write JSON readable by the owner only (0600), atomically: a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def run_oauth2_flow(
    account: AccountConfig, show_url: Callable[[str], None], timeout: float = 300, now: float | None = None
) -> Path:
    """The installed-app flow (loopback redirect + PKCE): the user signs in once, the refresh token is kept 0600."""
    import base64
    import hashlib
    import http.server
    import secrets
    import urllib.parse

    who = f"account '{account.name}'"
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    got: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            if query.get("state") == state and ("code" in query or "error" in query):
                got.update(query)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"mailaudit: you can close this window and go back to the terminal.\n")

        def log_message(self, format: str, *args: object) -> None:  # the query holds the code: never log it
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    redirect = f"http://127.0.0.1:{server.server_address[1]}/"
    params = {
        "client_id": account.oauth2_client_id, "redirect_uri": redirect, "response_type": "code",
        "scope": account.oauth2_scope, "code_challenge": challenge, "code_challenge_method": "S256",
        "state": state, "access_type": "offline", "prompt": "consent", "login_hint": account.username,
    }
    show_url(f"{account.oauth2_auth_url}?{urllib.parse.urlencode(params)}")
    deadline = time.monotonic() + timeout
    try:
        while not got and time.monotonic() < deadline:
            server.timeout = max(0.1, deadline - time.monotonic())
            server.handle_request()
    finally:
        server.server_close()
    if not got:
        raise AuthError(f"{who}: no answer from the browser within {int(timeout)} s; run `mailaudit auth "
                        f"{account.name}` again")
    if "error" in got:
        raise AuthError(f"{who}: sign-in was refused ({got['error'][:100]}); run `mailaudit auth {account.name}` "
                        "again")
    form = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": redirect,
            "client_id": account.oauth2_client_id, "code_verifier": verifier}
    if account.oauth2_client_secret:
        form["client_secret"] = account.oauth2_client_secret
    answer = _post_token(account, form)
    if not answer.get("refresh_token"):
        raise AuthError(f"{who}: the provider sent no refresh token; revoke mailaudit's access in your account "
                        f"settings and run `mailaudit auth {account.name}` again")
    now = time.time() if now is None else now
    path = token_path(account)
    _write_private(path, {
        "refresh_token": answer["refresh_token"], "access_token": answer["access_token"],
        "expires_at": now + int(answer.get("expires_in", 3600)),
    })
    return path


def authorise(
    cfg: Config, name: str, show_url: Callable[[str], None], ask_password: Callable[[], str]
) -> str:
    """`mailaudit auth NAME`: OAuth2 sign-in, or store a keyring password; returns what was done, for the user."""
    account = find_account(cfg, name)
    if account.auth == "oauth2":
        path = run_oauth2_flow(account, show_url)
        return f"account '{name}': OAuth2 token saved in {path} (readable by you only); it is refreshed automatically"
    if account.password_keyring:
        save_keyring_password(account, ask_password())
        return f"account '{name}': password stored in the system keyring (service '{KEYRING_SERVICE}', user '{name}')"
    raise ConfigError(f"account '{name}': nothing to authorise; `mailaudit auth` is for auth = \"oauth2\" or "
                      "password_keyring = true accounts")


def find_account(cfg: Config, name: str) -> AccountConfig:
    for account in cfg.accounts:
        if account.name == name:
            return account
    known = ", ".join(a.name for a in cfg.accounts) or "none"
    raise ConfigError(f"{cfg.source}: no account named '{name}' (configured: {known}); see [[accounts]] in "
                      "config.example.toml")
