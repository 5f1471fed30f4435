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
    from .models import User

    user_pk, _, version = user_id.partition(":")
    if not (user_pk.isascii() and user_pk.isdigit() and version.isascii() and version.isdigit()):
        return None
    user = User.get_or_none(User.id == int(user_pk))
    if user is None or not user.active or user.session_version != int(version):
        return None  # a session from before a password change or "sign out everywhere"
    return user
