"""The domain: the product's rules over the database, one module per noun of the brief (access, allowlist,
restrictions, access requests, users, sessions, sign-in, audit). Operations take an explicit `Visit` (user, IP,
practice, now) and return a result or a refusal; they never read Flask's request, `g` or `current_user`, so the
views, the command line and the tests call the same functions."""
