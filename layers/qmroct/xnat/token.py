"""Keep the XNAT alias token alive.

XNAT's alias tokens expire 48 h after issue by default (AliasTokenService, site setting
``aliasTokenTimeout``). The token bound to xnat-callback is the seed: the callback logs in with
the newest token it knows for the server (kept in the ledger, table ``xnat_tokens``), and while
that session is open it issues a successor once the token is older than :data:`RENEW_AFTER_S`,
so a token is always replaced well before it lapses, as long as one callback runs a day. If the
kept token is refused (revoked, or lapsed after two idle days) the bound one is tried; if XNAT
refuses that too, the job fails with XNAT's 401 and the operator binds a new token.
"""

from __future__ import annotations

from qmroct.clients.xnat import XnatClient, XnatError
from qmroct.storage.tokens import StoredToken, XnatTokens

RENEW_AFTER_S = 24 * 3600.0


def open_with_best_token(client: XnatClient, tokens: XnatTokens, bound: tuple[str, str]) -> None:
    """Open the client's session with the kept token, falling back to the bound one."""
    kept = tokens.get(client.url)
    if kept is not None and (kept.alias, kept.secret) != bound:
        client.use_token(kept.alias, kept.secret)
        try:
            client.open()
            return
        except XnatError as exc:
            if exc.status != 401:
                raise
    client.use_token(*bound)
    try:
        client.open()
    except XnatError as exc:
        if exc.status != 401:
            raise
        raise XnatError(
            exc.method,
            exc.path,
            401,
            "XNAT refused the alias token (expired or revoked; qmroct renews it only while it"
            " works): issue a new one and bind it as QMROCT_XNAT_ALIAS / QMROCT_XNAT_SECRET."
            f" XNAT said: {exc.message.strip()[:200]}",
        ) from exc


def renew_if_due(client: XnatClient, tokens: XnatTokens, now: float) -> StoredToken | None:
    """Issue and keep a new token when the one in use is unknown to the ledger or a day old.
    Needs an open session. Returns the new token, or None when none was due."""
    kept = tokens.get(client.url)
    in_use = client.token
    if kept is not None and kept.alias == in_use[0] and now - kept.issued_at < RENEW_AFTER_S:
        return None
    fresh = client.issue_token()
    record = StoredToken(
        xnat_url=client.url,
        alias=fresh.alias,
        secret=fresh.secret,
        issued_at=now,
        expires_at=fresh.expires_ms / 1000.0 if fresh.expires_ms else None,
    )
    tokens.put(record)
    client.use_token(fresh.alias, fresh.secret)
    return record
