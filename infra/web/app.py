"""The Flask application: sessions, login and logout, CSRF, security headers.

Flask signs its session cookie (itsdangerous HMAC); the cookie is httpOnly, SameSite=Lax (links
from XNAT still arrive logged in; cross-site POSTs carry no cookie) and Secure when
``QMROCT_WEB_SECURE_COOKIES`` is set. Every POST carries the session's CSRF token.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from qmroct import __version__
from qmroct.web.auth import User, csrf_ok, new_csrf_token
from qmroct.web.state import WebState

# Scripts and styles come from this server only (no CDN: the view works offline). Plotly
# injects <style> elements at run time, hence 'unsafe-inline' for styles but not for scripts.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'"
)


def state() -> WebState:
    return current_app.extensions["qmroct"]


def current_user() -> User | None:
    if "user" not in g:
        name = session.get("user")
        g.user = state().users.get(name) if name else None
    return g.user


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kw: Any) -> Any:
        if current_user() is None:
            if request.path.startswith(("/api/", "/tile/", "/download/")):
                abort(401)
            return redirect(url_for("login", next=request.full_path.rstrip("?")))
        return view(*args, **kw)

    return wrapped


def scope() -> list[str] | None:
    user = current_user()
    assert user is not None
    return user.scope(state().test_projects)


def _safe_next(target: str | None) -> str:
    # Only paths on this site: an absolute URL in ?next= would make login an open redirect.
    if not target:
        return url_for("pages.search_page")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.search_page")
    return target


def create_app(web_state: WebState) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=web_state.secret_key(),
        SESSION_COOKIE_NAME="qmroct_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=web_state.web.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=web_state.web.session_hours),
        MAX_CONTENT_LENGTH=1 * 1024 * 1024,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    app.extensions["qmroct"] = web_state

    @app.before_request
    def _csrf() -> None:
        if "csrf" not in session:
            session["csrf"] = new_csrf_token()
        if request.method == "POST":
            given = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
            if not csrf_ok(session.get("csrf"), given):
                abort(400, description="the form's CSRF token is missing or wrong; reload the page")

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        if "Cache-Control" not in resp.headers and not request.path.startswith("/static/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {
            "user": current_user(),
            "csrf_token": session.get("csrf", ""),
            "version": __version__,
        }

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        st = state()
        error = ""
        status = 200
        if request.method == "POST":
            username = request.form.get("username", "").strip()[:64]
            password = request.form.get("password", "")[:1024]
            remote = request.remote_addr or "?"
            keys = (f"user:{username.lower()}", f"addr:{remote}")
            wait = st.limiter.blocked(*keys)
            if wait > 0:
                error = f"Too many failed logins; try again in {int(wait) + 1} s."
                status = 429
            else:
                user = st.users.verify(username, password)
                if user is None:
                    st.limiter.failed(*keys)
                    error = "Wrong username or password."
                    status = 401
                else:
                    st.limiter.succeeded(keys[0])
                    # A new session on login: nothing from before (a planted id) carries over.
                    session.clear()
                    session.permanent = True
                    session["user"] = user.username
                    session["csrf"] = new_csrf_token()
                    return redirect(_safe_next(request.args.get("next")))
        return render_template("login.html", error=error), status

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("login"))

    @app.get("/healthz")
    def healthz() -> Any:
        return {"ok": True, "version": __version__}

    from qmroct.web.develop import bp as develop_bp
    from qmroct.web.downloads import bp as downloads_bp
    from qmroct.web.pages import bp as pages_bp
    from qmroct.web.viewer import bp as viewer_bp

    app.register_blueprint(pages_bp)
    app.register_blueprint(viewer_bp)
    app.register_blueprint(downloads_bp)
    app.register_blueprint(develop_bp)
    return app
