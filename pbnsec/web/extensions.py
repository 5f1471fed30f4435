"""Flask extensions, created here and attached to the app in create_app with init_app."""
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
