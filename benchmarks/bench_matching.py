"""How the per-request access decision scales with the allowlist: prints figures and ratios, asserts nothing.

Run: .venv/bin/python benchmarks/bench_matching.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from ipaddress import IPv4Network, ip_address
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pbnsec import create_app  # noqa: E402
from pbnsec.core.iprules import NetworkMatcher  # noqa: E402
from pbnsec.db import database  # noqa: E402
from pbnsec.domain.access import decide_for, overview  # noqa: E402
from pbnsec.domain.users import create_practice, create_user  # noqa: E402
from pbnsec.models import AllowlistEntry, IPRestriction  # noqa: E402

SIZES = (10, 1_000, 10_000)
LOOKUPS = 300


def networks(count: int):
    """Distinct /24s and /32s in 10.0.0.0/8 (data only: no traffic goes anywhere)."""
    for i in range(count):
        base = (10 << 24) | (i << 8)
        yield IPv4Network((base, 24 if i % 2 else 32))


def time_per_call(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    results = {}
    for size in SIZES:
        folder = Path(tempfile.mkdtemp())
        app = create_app({"DATABASE_URL": f"sqlite:///{folder}/bench.db", "INSTANCE_PATH": str(folder),
                          "SECRET_KEY": "b" * 40, "TRUSTED_PROXIES": 0, "BOOTSTRAP": False})
        with app.app_context():
            practice = create_practice("Bench Dental")
            user, _ = create_user("bench@example.com", "Bench", "Front Desk", ["Bench Dental"], "correct horse battery")
            with database.atomic():
                rows = [AllowlistEntry.stored(n, practice, label="bench") for n in networks(size)]
                for chunk in range(0, len(rows), 500):
                    AllowlistEntry.insert_many(rows[chunk:chunk + 500]).execute()
                IPRestriction.create(practice=practice, enforced=True)
            hit, miss = ip_address("10.0.1.1"), ip_address("192.0.2.1")  # 10.0.1.0/24 is an entry
            assert decide_for(user, practice.id, hit).allowed and not decide_for(user, practice.id, miss).allowed
            db_hit = time_per_call(lambda: decide_for(user, practice.id, hit), LOOKUPS)
            db_miss = time_per_call(lambda: decide_for(user, practice.id, miss), LOOKUPS)
            whole = time_per_call(lambda: overview(user, hit), LOOKUPS)  # what the hook does per request
        matcher = NetworkMatcher((n, None) for n in networks(size))
        mem = time_per_call(lambda: matcher.match(hit), 20_000)
        results[size] = (db_hit, db_miss, mem, whole)
        database.close()
    print(f"{'entries':>8} {'decide (hit)':>14} {'decide (miss)':>14} {'overview':>12} {'matcher':>10}")
    for size, (db_hit, db_miss, mem, whole) in results.items():
        print(f"{size:>8} {db_hit * 1e6:>11.0f} µs {db_miss * 1e6:>11.0f} µs {whole * 1e6:>9.0f} µs "
              f"{mem * 1e6:>7.1f} µs")
    small, large = results[SIZES[0]], results[SIZES[-1]]
    print(f"ratio {SIZES[-1]} / {SIZES[0]} entries: decide hit {large[0] / small[0]:.2f}x, "
          f"miss {large[1] / small[1]:.2f}x, in-memory matcher {large[2] / small[2]:.2f}x "
          f"(a linear scan would be ~{SIZES[-1] // SIZES[0]}x)")


if __name__ == "__main__":
    main()
