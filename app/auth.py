"""Bearer tokens for the task API: writes need API_WRITE_TOKEN, reads API_READ_TOKEN, when set.

    Authorization: Bearer <token>

With neither setting the API is open, as it always was. With API_WRITE_TOKEN set, POST, PUT,
PATCH and DELETE need it; reads stay open unless API_READ_TOKEN is set too, and then the write
token reads as well (whoever may change tasks may see them). A missing or wrong token is a 401
in the usual JSON error shape, with ``WWW-Authenticate: Bearer`` (RFC 6750).

The token is never logged: the request log records method, path and status only, and nothing
here puts the header, or the token, into a message.
"""

import hmac

from flask import Blueprint, current_app, request

from app.errors import ApiError

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REALM = "dropstack"


def bearer_token(header: str | None) -> str | None:
    """The token from an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(sent: str | None, expected: str | None) -> bool:
    """Whether ``sent`` is ``expected``, in time that does not depend on where they differ."""
    if sent is None or expected is None:
        return False
    # Bytes, because compare_digest refuses non-ASCII str, and a client may send anything.
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def tokens_for(method: str, write_token: str | None, read_token: str | None) -> list[str] | None:
    """The tokens that may make a ``method`` request; None when it needs none."""
    if method in WRITE_METHODS:
        return [write_token] if write_token else None
    if read_token:
        return [token for token in (read_token, write_token) if token]
    return None


def unauthorized(sent: str | None) -> ApiError:
    """The 401; RFC 6750 says to name the error only when a token was actually sent."""
    challenge = f'Bearer realm="{REALM}"'
    if sent is not None:
        challenge += ', error="invalid_token"'
        message = "the bearer token is not valid for this request"
    else:
        message = "this request needs an Authorization: Bearer <token> header"
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def require_token() -> None:
    """before_request for protected blueprints: refuse the request unless its token fits."""
    allowed = tokens_for(
        request.method,
        current_app.config["API_WRITE_TOKEN"],
        current_app.config["API_READ_TOKEN"],
    )
    if allowed is None:
        return
    sent = bearer_token(request.headers.get("Authorization"))
    # Every allowed token is compared, so the answer's timing says nothing about which one is set.
    matches = [token_matches(sent, token) for token in allowed]
    if not any(matches):
        raise unauthorized(sent)


def protect(blueprint: Blueprint) -> None:
    """Make every route of ``blueprint`` check tokens as configured."""
    blueprint.before_request(require_token)
