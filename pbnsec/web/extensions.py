"""Flask extensions, created here and attached to the app in create_app with init_app."""
from flask import request
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx

csrf = CSRFProtect()
htmx = Htmx()
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to continue."
login_manager.session_protection = "basic"


@login_manager.user_loader
def _load_user(user_id: str):
    from pbnsec.domain.sessions import find

    user_pk, _, token = user_id.partition(":")
    user = find(token)
    return user if user is not None and str(user.id) == user_pk else None


class SessionCookie(SecureCookieSessionInterface):
    """Flask's signed session cookie. Under PBNSEC_COOKIE_DOMAIN, whenever the shared cookie is written, a cookie of
    the same name kept for this host alone (from before the setting) is expired: browsers send both, the older first,
    and it would hide the shared one."""

    def save_session(self, app, session, response) -> None:
        super().save_session(app, session, response)
        name = self.get_cookie_name(app)
        written = any(header.startswith(name + "=") for header in response.headers.getlist("Set-Cookie"))
        if written and self.get_cookie_domain(app) and name in request.cookies:
            response.delete_cookie(name, path=self.get_cookie_path(app), secure=self.get_cookie_secure(app),
                                   httponly=True, samesite=self.get_cookie_samesite(app))
