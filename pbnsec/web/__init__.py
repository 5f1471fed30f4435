"""The web layer: Flask only. One hook builds each request's view of access; thin views parse, call the domain and
render. Imports run one way: web -> domain -> core and models."""
from __future__ import annotations


def init_app(app) -> None:
    """Attach the extensions, the request hook, the shared page behaviour and every blueprint."""
    from pbnsec.web import gate, hook, pages
    from pbnsec.web.account import bp as account_bp
    from pbnsec.web.auth import bp as auth_bp
    from pbnsec.web.extensions import SessionCookie, csrf, htmx, login_manager
    from pbnsec.web.health import bp as health_bp
    from pbnsec.web.home import bp as home_bp
    from pbnsec.web.people import bp as people_bp
    from pbnsec.web.security import bp as security_bp

    app.url_map.converters["int"] = pages.IdConverter
    app.session_interface = SessionCookie()
    hook.init_app(app)  # first: a session seen from a blocked IP ends even on a request CSRF would refuse
    csrf.init_app(app)
    htmx.init_app(app)
    login_manager.init_app(app)
    pages.init_app(app)
    gate.init_app(app)
    for blueprint in (account_bp, auth_bp, gate.bp, health_bp, home_bp, people_bp, security_bp):
        app.register_blueprint(blueprint)
