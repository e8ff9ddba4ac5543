"""Globus login for the ``globus`` site: globus-sdk's native-app flow and token storage.

Tokens live only in globus-sdk's own JSON token storage, one file in the lwfm home
(``globus/tokens.json``, one namespace per site), which globus-sdk writes with mode
0600. lwfm never copies a token anywhere else: not into the store, the graph, a log
line or a bundle. Errors name the command that logs in again, never the token.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import globus_sdk
from globus_sdk.scopes import GCSCollectionScopes, TransferScopes
from globus_sdk.token_storage import JSONTokenStorage, TokenStorageData
from globus_sdk.transport import RetryConfig

from lwfm.errors import AuthError, NotFound, SiteError
from lwfm.site import Auth

TRANSFER_RS = TransferScopes.resource_server   # "transfer.api.globus.org"


def token_file(home: Path) -> Path:
    """Where the tokens of every Globus site of this home are kept (mode 0600)."""
    return home / "globus" / "tokens.json"


def default_scopes(collections: Iterable[str]) -> list[str]:
    """Transfer, with consent to reach each collection's data (GCS ``data_access``)."""
    deps = [GCSCollectionScopes(c).data_access for c in dict.fromkeys(collections)]
    return [str(TransferScopes.all.with_dependencies(deps))]


def _ask_code(url: str) -> str:
    """Show the login URL and read the code Globus shows after login (stdin)."""
    sys.stderr.write(f"Log in to Globus here, then paste the code it shows:\n\n  {url}\n\n")
    sys.stderr.flush()
    return input("Globus authorization code: ").strip()


class GlobusAuth(Auth):
    """Native-app login (refresh tokens), token storage, refresh, and actionable errors."""

    def __init__(self, site: str, home: Path, client_id: str | None, scopes: list[str],
                 prompt: Callable[[str], str] = _ask_code):
        self.site = site
        self.client_id = client_id
        self.scopes = list(scopes)
        self.prompt = prompt
        path = token_file(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        self.storage = JSONTokenStorage(path, namespace=f"lwfm-site-{site}")

    # -- the login command ----------------------------------------------------------
    def login_command(self, scopes: Iterable[str] = ()) -> str:
        """The exact command that logs in again (with the extra scopes asked for)."""
        extra = [s for s in dict.fromkeys(scopes) if s not in self.scopes]
        return " ".join([f"lwfm login {self.site} --force"]
                        + [f"--scope '{s}'" for s in extra])

    def _client(self) -> globus_sdk.NativeAppAuthClient:
        if not self.client_id:
            raise AuthError(f"[sites.{self.site}] needs client_id: the id of a Globus native "
                            "app (register one at https://app.globus.org/settings/developers)")
        return globus_sdk.NativeAppAuthClient(self.client_id, app_name="lwfm")

    def login(self, force: bool = False, scopes: Iterable[str] = ()) -> None:
        """Log in through the browser (native-app flow) unless the tokens are current;
        ``scopes``: more than the configured ones (what a ConsentRequired error named)."""
        extra = list(scopes)
        if not force and not extra and self.is_current():
            return
        client = self._client()
        client.oauth2_start_flow(requested_scopes=list(dict.fromkeys(self.scopes + extra)),
                                 refresh_tokens=True)
        code = self.prompt(client.oauth2_get_authorize_url())
        if not code:
            raise AuthError(f"no authorization code was given; run {self.login_command()} "
                            "again and paste the code Globus shows after you log in")
        try:
            tokens = client.oauth2_exchange_code_for_tokens(code)
        except globus_sdk.AuthAPIError as e:
            raise AuthError(f"Globus refused the login code ({e.http_status} {e.code}); run "
                            f"{self.login_command()} again with a fresh code") from None
        if TRANSFER_RS not in tokens.by_resource_server:
            raise AuthError(f"the Globus login gave no Transfer token; check [sites.{self.site}] "
                            f"scopes and run {self.login_command()}")
        self.storage.store_token_response(tokens)

    def is_current(self) -> bool:
        """True if a Transfer token is stored and valid now, refreshed if it had expired;
        False if there is none or Globus refuses to refresh it (log in again)."""
        try:
            authorizer = self._authorizer()
        except AuthError:
            return False
        try:
            authorizer.ensure_valid_token()
        except globus_sdk.AuthAPIError:
            return False
        except globus_sdk.GlobusError as e:   # Globus unreachable: not a verdict on the login
            raise self.error("refreshing the Globus login", e) from None
        return True

    def check_logged_in(self) -> TokenStorageData:
        """The stored Transfer tokens, or AuthError naming the login command."""
        data = self.storage.get_token_data(TRANSFER_RS)
        if data is None or not data.refresh_token:
            raise AuthError(f"site {self.site!r} is not logged in to Globus; run: "
                            f"{self.login_command()}")
        return data

    def _authorizer(self) -> globus_sdk.RefreshTokenAuthorizer:
        data = self.check_logged_in()
        return globus_sdk.RefreshTokenAuthorizer(
            str(data.refresh_token), self._client(), access_token=data.access_token,
            expires_at=data.expires_at_seconds, on_refresh=self.storage.store_token_response)

    def transfer_client(self, retry: RetryConfig) -> globus_sdk.TransferClient:
        """A Transfer client whose token refreshes itself (and is stored again when it does)."""
        return globus_sdk.TransferClient(authorizer=self._authorizer(), app_name="lwfm",
                                         retry_config=retry)

    def close(self) -> None:
        self.storage.close()

    # -- errors ---------------------------------------------------------------------
    def error(self, doing: str, e: globus_sdk.GlobusError) -> Exception:
        """The lwfm error for a Globus error, telling the user what to do next."""
        if isinstance(e, globus_sdk.GlobusAPIError):
            consent = e.info.consent_required
            if consent:
                return AuthError(
                    f"site {self.site!r}: Globus needs your consent to more scopes while "
                    f"{doing} ({', '.join(consent.required_scopes)}); log in again with: "
                    f"{self.login_command(consent.required_scopes)}")
            if e.info.authorization_parameters or e.http_status == 401:
                return AuthError(f"site {self.site!r}: Globus wants a new login while {doing}"
                                 f" ({e.code}); run: {self.login_command()}")
            if e.http_status == 404:
                return NotFound(f"site {self.site!r}: not found while {doing}: {e.message}")
            return SiteError(f"site {self.site!r}: Globus refused {doing}: "
                             f"{e.http_status} {e.code}: {e.message}")
        return SiteError(f"site {self.site!r}: cannot reach Globus while {doing} (retried "
                         f"with backoff): {e}")
