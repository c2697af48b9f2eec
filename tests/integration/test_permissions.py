"""The permission model (sql/005_permissions.sql, intraday/backoffice/permissions.py, docs/permissions.md) against
the real PostgreSQL: logins of every role connect and query; nothing is mocked.

The embedded server trusts local connections (no password check), so a login "connects as" the
role by user name; that the stored password is a valid SCRAM verifier is checked separately.
Roles are cluster-wide: every test uses its own names and drops them again.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from intraday.backoffice.invoices import issue_invoices
from intraday.backoffice.permissions import (
    PermissionSetupError,
    create_owner_login,
    create_staff_login,
    dashboard_owner_role,
    drop_login,
    owner_session,
    permission_summary,
    sync_dashboard_users,
    user_session,
)
from intraday.sink.writer import write_batch

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.UTC
T1, T2 = dt.datetime(2025, 6, 10, 10, 0, tzinfo=UTC), dt.datetime(2025, 6, 10, 10, 15, tzinfo=UTC)
OWNED, OTHER = ("WND-A1", "SOL-A2"), ("WND-B1",)
ALL_ASSETS = OWNED + OTHER
# what an asset owner may SELECT at all (everything else: permission denied)
OWNER_READABLE = {"asset_qh", "asset_imbalance_qh", "contracts", "technical_data", "invoices", "invoices_current",
                  "my_invoice_lines", "asset_owners", "market_index_qh"}
PORTFOLIO_WIDE = ["trading_qh", "portfolio_qh", "portfolio_qh_history", "alerts", "imbalance_prices",
                  "redispatch_compensation", "portfolio_hourly", "quarantine", "sink_progress", "schema_migrations",
                  "invoice_lines"]  # the lines table itself (no RLS: COPY); owners read my_invoice_lines


def _url(base: str, user: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(base)
    info["user"] = user
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**info)


def _name(prefix: str) -> str:
    return f"t_{prefix}_{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------
# fixtures: a database with rows of three assets, logins of every role


def _seed(conn) -> None:
    def ins(table, **cols):
        conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols)),
            sql.SQL(", ").join(sql.Placeholder() * len(cols))), list(cols.values()))

    for i, a in enumerate(ALL_ASSETS):
        for t in (T1, T2):
            ins("asset_qh", asset_id=a, delivery_start=t, latest_kw=1000.0 + i, tradeable_kw=900.0 + i,
                best_kw=950.0 + i, best_source="final", final_kw=950.0 + i)
            ins("asset_imbalance_qh", asset_id=a, delivery_start=t, position_mwh=0.225, actual_mwh=0.2375,
                imbalance_mwh=0.0125, price_eur_mwh=80.0, price_source="final", cost_eur=-1.0)
        ins("contracts", file_time="2025-06-01T04:45:00Z", contract_id=f"CTR-{a}", asset_id=a,
            metering_point_id=f"MP-{a}", capacity_mw=3.0, contract_begin=dt.date(2025, 1, 1), price_model="fixed",
            price_eur_mwh=70.0, fee_model="fixed_as_produced", fee=2.0)
        ins("technical_data", asset_id=a, published_at=T1, name=f"Park {a}", payload=json.dumps({"owner": a}))
    for t in (T1, T2):
        ins("trading_qh", delivery_start=t, book="private", trades=2, sold_mwh=1.0, bought_mwh=0.0, net_mwh=1.0,
            revenue_eur=80.0, vwap_eur_mwh=80.0)
        ins("trading_qh", delivery_start=t, book="public", trades=5, sold_mwh=0, bought_mwh=0, net_mwh=0,
            vwap_eur_mwh=75.0, idx_full_eur_mwh=75.0)
        ins("portfolio_qh", delivery_start=t, best_of_infeed_kw=2853.0, net_sold_mwh=1.0, imbalance_mwh=-0.28,
            imbalance_price_source="final", imbalance_price_eur_mwh=90.0, imbalance_cost_eur=25.2)
        ins("portfolio_qh_history", delivery_start=t, known_at=t, best_of_infeed_kw=2853.0)
        ins("imbalance_prices", delivery_start=t, kind="final", published_at=T2, unterdeckt_eur_mwh=90.0,
            ueberdeckt_eur_mwh=60.0)
        ins("redispatch_compensation", delivery_start=t, published_at=T2, price_eur_mwh=40.0)
    ins("alerts", alert_id="al-1", delivery_start=T1, status="raised", kind="imbalance_volume", severity="warning",
        subject="portfolio", detected_at=T1, payload=json.dumps({"value": 1.2}))
    ins("quarantine", topic="vpp.forecasts", source_file="x.json", line=1, reason="bad json", raw="{")
    ins("sink_progress", topic="results", partition=0, next_offset=10)


@pytest.fixture
def db(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        _seed(conn)
        issue_invoices(conn, 2025, 6)  # one invoice per contract, with its lines
    return fresh_db


@pytest.fixture
def logins(db):
    """Logins of every role (names unique per test), dropped afterwards."""
    names = {"owner": _name("own"), "owner2": _name("own"), "desk": _name("desk"), "ops": _name("ops"),
             "back_office": _name("bo")}
    with psycopg.connect(db, autocommit=True) as conn:
        create_owner_login(conn, names["owner"], "owner-pw", list(OWNED))
        create_owner_login(conn, names["owner2"], "owner2-pw", list(OTHER))
        for role in ("desk", "ops", "back_office"):
            create_staff_login(conn, names[role], f"{role}-pw", role)
    yield names
    with psycopg.connect(db, autocommit=True) as conn:
        for n in names.values():
            drop_login(conn, n)


def connect_as(db: str, user: str) -> psycopg.Connection:
    return psycopg.connect(_url(db, user), autocommit=True)


def superuser_counts(db: str) -> dict[str, int]:
    with psycopg.connect(db, autocommit=True) as conn:
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                for t in sorted(OWNER_READABLE | set(PORTFOLIO_WIDE))}


# ---------------------------------------------------------------------------------------------
# asset owners


def test_an_owner_login_reads_only_its_assets_rows_everywhere(db, logins):
    with connect_as(db, logins["owner"]) as c:
        assert c.execute("SELECT current_user").fetchone()[0] == logins["owner"]
        for table in ("asset_qh", "asset_imbalance_qh", "contracts", "technical_data"):
            got = {r[0] for r in c.execute(sql.SQL("SELECT asset_id FROM {}").format(sql.Identifier(table)))}
            assert got == set(OWNED), table
        assert c.execute("SELECT count(*) FROM asset_qh").fetchone()[0] == 4  # 2 assets x 2 QHs
        # asking for another owner's asset finds nothing (no error, no hint)
        assert c.execute("SELECT count(*) FROM asset_qh WHERE asset_id = 'WND-B1'").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM contracts c JOIN asset_qh a USING (asset_id)"
                         " WHERE c.asset_id = ANY(%s)", (list(OTHER),)).fetchone()[0] == 0
        # invoices and their lines: only the owner's contracts
        inv = {r[0] for r in c.execute("SELECT payload ->> 'asset_id' FROM invoices")}
        assert inv == set(OWNED)
        assert {r[0] for r in c.execute("SELECT payload ->> 'asset_id' FROM invoices_current")} == set(OWNED)
        lines = {r[0] for r in c.execute("SELECT DISTINCT contract_id FROM my_invoice_lines")}
        assert lines == {f"CTR-{a}" for a in OWNED}
        # the mapping: its own pairs only
        assert {r for r in c.execute("SELECT owner_role, asset_id FROM asset_owners")} == {
            (logins["owner"], a) for a in OWNED}
    with connect_as(db, logins["owner2"]) as c:
        assert {r[0] for r in c.execute("SELECT asset_id FROM asset_qh")} == set(OTHER)
        assert {r[0] for r in c.execute("SELECT payload ->> 'asset_id' FROM invoices")} == set(OTHER)


@pytest.mark.parametrize("table", PORTFOLIO_WIDE)
def test_an_owner_is_refused_every_portfolio_wide_table(db, logins, table):
    with connect_as(db, logins["owner"]) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table)))


def test_an_owner_reads_the_public_market_but_never_the_private_book(db, logins):
    with connect_as(db, logins["owner"]) as c:
        rows = c.execute("SELECT delivery_start, vwap_eur_mwh, idx_full_eur_mwh FROM market_index_qh").fetchall()
        assert [r[1] for r in rows] == [75.0, 75.0]  # the public rows; the private VWAP is 80
        cols = [d.name for d in c.execute("SELECT * FROM market_index_qh LIMIT 0").description]
        assert "book" not in cols and "revenue_eur" not in cols


def test_an_owner_cannot_write_anything_nor_escape_its_role(db, logins):
    own = logins["owner"]
    with connect_as(db, own) as c:
        attempts = [
            ("UPDATE asset_qh SET best_kw = 0 WHERE asset_id = %s", (OWNED[0],)),
            ("DELETE FROM asset_qh WHERE asset_id = %s", (OWNED[0],)),
            ("INSERT INTO asset_qh (asset_id, delivery_start) VALUES (%s, now())", (OWNED[0],)),
            ("INSERT INTO asset_owners (owner_role, asset_id) VALUES (%s, 'WND-B1')", (own,)),
            ("UPDATE invoices SET state = 'final'", None),
            ("INSERT INTO invoices (contract_id, month, version, state, status, content_hash, payload)"
             " VALUES ('x', '2025-06', 9, 'final', 'ok', 'h', '{}')", None),
            ("UPDATE contracts SET price_eur_mwh = 999", None),
            ("ALTER TABLE asset_qh DISABLE ROW LEVEL SECURITY", None),
            ("DROP POLICY owner_read ON asset_qh", None),
            ("SET ROLE intraday_desk", None),
            ("SET ROLE intraday_writer", None),
            ("CREATE TABLE public.mine (x int)", None),
        ]
        for stmt, params in attempts:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(stmt, params)
        # switching row security off does not bypass: the query fails instead
        c.execute("SET row_security = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT * FROM asset_qh")
    assert superuser_counts(db)["asset_qh"] == 6  # nothing changed


def test_the_owner_privilege_matrix_over_every_relation(db, logins):
    """Every table, view and materialized view of the schema: an owner may SELECT exactly
    OWNER_READABLE and write nothing; a new table of a later migration is never readable."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE later_table (asset_id text)")  # a later migration's table
        rels = conn.execute(
            "SELECT c.relname, has_table_privilege(%s, c.oid, 'SELECT'),"
            "       has_table_privilege(%s, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
            " FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
            "   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')", (logins["owner"], logins["owner"])).fetchall()
        desk_reads_later = conn.execute("SELECT has_table_privilege(%s, 'later_table', 'SELECT')",
                                        (logins["desk"],)).fetchone()[0]
    readable = {r for r, sel, _ in rels if sel}
    assert readable == OWNER_READABLE
    assert not [r for r, _, write in rels if write]
    assert desk_reads_later  # default privileges: staff read new tables, owners do not


def test_views_readable_by_owners_do_not_leak(db, logins):
    """A view an owner may read is security_barrier; if it reads a table with RLS it must read as
    the caller (security_invoker) or filter on current_user itself: else its owner's rights (here
    a superuser) would bypass RLS."""
    with psycopg.connect(db, autocommit=True) as conn:
        views = conn.execute(
            "SELECT c.relname, coalesce(c.reloptions, '{}'),"
            "       ARRAY(SELECT DISTINCT t.relname FROM pg_rewrite rw JOIN pg_depend d ON d.objid = rw.oid"
            "             JOIN pg_class t ON t.oid = d.refobjid"
            "             WHERE rw.ev_class = c.oid AND t.oid <> c.oid AND t.relrowsecurity),"
            "       lower(pg_get_viewdef(c.oid))"
            " FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace = current_schema()::regnamespace"
            "   AND has_table_privilege('intraday_asset_owner', c.oid, 'SELECT')").fetchall()
        # a leaky function (not LEAKPROOF) that reports every row it sees
        conn.execute("CREATE FUNCTION leak(text, double precision) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS"
                     " $$ BEGIN RAISE NOTICE 'saw % %', $1, $2; RETURN true; END $$")
    assert {v[0] for v in views} == {"invoices_current", "market_index_qh", "my_invoice_lines"}
    for name, options, rls_tables, definition in views:
        assert "security_barrier=true" in options, name
        if rls_tables:
            assert "security_invoker=true" in options or "pg_has_role(current_user" in definition, name

    seen: list[str] = []
    with connect_as(db, logins["owner"]) as c:
        c.add_notice_handler(lambda d: seen.append(d.message_primary))
        c.execute("SELECT * FROM market_index_qh WHERE leak('market', vwap_eur_mwh)").fetchall()
        c.execute("SELECT * FROM asset_qh WHERE leak(asset_id, best_kw)").fetchall()
        c.execute("SELECT * FROM invoices_current WHERE leak(payload ->> 'asset_id', version)").fetchall()
        c.execute("SELECT * FROM my_invoice_lines WHERE leak(contract_id, amount_eur::float8)").fetchall()
    assert seen and not [s for s in seen if "WND-B1" in s or " 80" in s], seen
    # statistics of RLS tables are hidden from those who would be filtered
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("ANALYZE asset_qh")
    with connect_as(db, logins["owner"]) as c:
        assert c.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'asset_qh'").fetchone()[0] == 0


# ---------------------------------------------------------------------------------------------
# staff


def test_desk_ops_and_back_office_read_everything_they_are_granted(db, logins):
    every = superuser_counts(db)
    for role, extra in (("desk", False), ("ops", True), ("back_office", True)):
        with connect_as(db, logins[role]) as c:
            for table, n in every.items():
                if (table in ("quarantine", "sink_progress", "schema_migrations") and not extra
                        or table == "my_invoice_lines"):  # the owners' view of their lines
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        c.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                    continue
                got = c.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
                assert got == n, (role, table)


def test_desk_and_ops_acknowledge_alerts_and_write_nothing_else(db, logins):
    for role in ("desk", "ops"):
        with connect_as(db, logins[role]) as c:
            n = c.execute("UPDATE alerts SET acknowledged_by = %s, acknowledged_at = now() WHERE alert_id = 'al-1'",
                          (role,)).rowcount
            assert n == 1
            for stmt in ("UPDATE alerts SET status = 'resolved'", "DELETE FROM alerts",
                         "UPDATE asset_qh SET best_kw = 0", "INSERT INTO invoices (contract_id, month, version, "
                         "state, status, content_hash, payload) VALUES ('x', '2025-06', 9, 'final', 'ok', 'h', '{}')",
                         "INSERT INTO asset_owners VALUES ('someone', 'WND-B1')"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(stmt)
    with connect_as(db, logins["back_office"]) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("UPDATE alerts SET acknowledged_by = 'bo'")


def test_the_back_office_issues_invoices_and_owners_see_only_theirs(db, logins):
    with psycopg.connect(db, autocommit=True) as conn:  # new data: the next invoice versions
        conn.execute("UPDATE asset_qh SET best_kw = best_kw + 10, final_kw = final_kw + 10")
    with connect_as(db, logins["back_office"]) as c:
        issued = issue_invoices(c, 2025, 6)
        assert sorted(i["version"] for i in issued) == [2, 2, 2]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("UPDATE asset_qh SET best_kw = 0")
    with connect_as(db, logins["owner"]) as c:
        rows = c.execute("SELECT payload ->> 'asset_id', version FROM invoices_current ORDER BY 1").fetchall()
        assert rows == [(a, 2) for a in sorted(OWNED)]


# ---------------------------------------------------------------------------------------------
# who bypasses RLS, and the writer


def test_superusers_bypass_and_a_table_owner_does_not(db, logins):
    """reliability-notes 9: a superuser (and BYPASSRLS) bypasses RLS, FORCE or not; the table
    owner does not (FORCE ROW LEVEL SECURITY) until it is a member of intraday_writer."""
    with psycopg.connect(db, autocommit=True) as su:
        assert su.execute("SELECT count(*) FROM asset_qh").fetchone()[0] == 6  # superuser: everything
        tab_owner, bypass = _name("tabowner"), _name("bypass")
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(tab_owner)))
        su.execute(sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS IN ROLE intraday_asset_owner").format(
            sql.Identifier(bypass)))
        su.execute(sql.SQL("ALTER TABLE asset_qh OWNER TO {}").format(sql.Identifier(tab_owner)))
    try:
        with connect_as(db, tab_owner) as c:
            assert c.execute("SELECT count(*) FROM asset_qh").fetchone()[0] == 0  # FORCE: owner filtered too
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # new row violates row-level security
                c.execute("INSERT INTO asset_qh (asset_id, delivery_start) VALUES ('X', now())")
        with psycopg.connect(db, autocommit=True) as su:
            su.execute(sql.SQL("GRANT intraday_writer TO {}").format(sql.Identifier(tab_owner)))
        with connect_as(db, tab_owner) as c:  # as the sink writes: upsert by key
            c.execute("INSERT INTO asset_qh (asset_id, delivery_start, best_kw) VALUES ('WND-A1', %s, 1.0)"
                      " ON CONFLICT (asset_id, delivery_start) DO UPDATE SET best_kw = EXCLUDED.best_kw", (T1,))
            assert c.execute("SELECT count(*) FROM asset_qh").fetchone()[0] == 6
        with connect_as(db, bypass) as c:  # BYPASSRLS: every owner's rows (never give it to owners)
            assert c.execute("SELECT count(DISTINCT asset_id) FROM asset_qh").fetchone()[0] == 3
        with psycopg.connect(db, autocommit=True) as su, pytest.raises(PermissionSetupError):
            create_owner_login(su, bypass, "x", ["WND-A1"])  # the helper refuses such a role
    finally:
        with psycopg.connect(db, autocommit=True) as su:
            su.execute(sql.SQL("ALTER TABLE asset_qh OWNER TO CURRENT_USER"))
            for r in (tab_owner, bypass):
                su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(r)))
                su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(r)))


def test_the_sink_writes_as_a_plain_writer_login_despite_forced_rls(db):
    """A dedicated sink login (member of intraday_writer, neither owner nor superuser) upserts
    through the sink's own path: COPY into a temp staging table, then INSERT ... ON CONFLICT."""
    from intraday.sink.writer import TABLES, write_batch

    writer = _name("sinkw")
    with psycopg.connect(db, autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE intraday_writer").format(sql.Identifier(writer)))
    try:
        row = dict.fromkeys(TABLES["asset_qh"].columns)
        row.update(asset_id="WND-A1", delivery_start=T1, best_kw=1.0, best_source="final", live_samples=0,
                   redispatched=False, in_scope=True)
        contract = dict.fromkeys(TABLES["contracts"].columns)
        contract.update(file_time=T2, contract_id="CTR-NEW", asset_id="WND-B1", errors="[]")
        with connect_as(db, writer) as c:
            write_batch(c, {"asset_qh": {("WND-A1", T1): tuple(row.values())},
                            "contracts": {(T2, "CTR-NEW"): tuple(contract.values())}},
                        {("results", 0): 11})
            assert c.execute("SELECT best_kw FROM asset_qh WHERE asset_id = 'WND-A1' AND delivery_start = %s",
                             (T1,)).fetchone()[0] == 1.0
            assert c.execute("SELECT count(*) FROM asset_qh").fetchone()[0] == 6
        with psycopg.connect(db, autocommit=True) as su:
            assert su.execute("SELECT next_offset FROM sink_progress WHERE topic = 'results'").fetchone()[0] == 11
            assert su.execute("SELECT count(*) FROM contracts WHERE contract_id = 'CTR-NEW'").fetchone()[0] == 1
    finally:
        with psycopg.connect(db, autocommit=True) as su:
            su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(writer)))
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(writer)))


def test_a_login_outside_the_groups_reads_nothing_even_if_granted_a_table(db):
    stranger = _name("stranger")
    with psycopg.connect(db, autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(stranger)))
        su.execute(sql.SQL("GRANT SELECT ON asset_qh, trading_qh TO {}").format(sql.Identifier(stranger)))
    try:
        with connect_as(db, stranger) as c:
            assert c.execute("SELECT count(*) FROM asset_qh").fetchone()[0] == 0  # no policy applies: no row
            assert c.execute("SELECT count(*) FROM trading_qh").fetchone()[0] == 4  # no RLS there: the GRANT rules
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("SELECT 1 FROM contracts")
    finally:
        with psycopg.connect(db, autocommit=True) as su:
            su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(stranger)))
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(stranger)))


# ---------------------------------------------------------------------------------------------
# sessions for the dashboard


def test_owner_session_scopes_a_privileged_connection_and_ends_with_it(db, logins):
    with psycopg.connect(db, autocommit=True) as conn:  # the dashboard's (superuser) login
        with owner_session(conn, logins["owner"]):
            assert {r[0] for r in conn.execute("SELECT asset_id FROM asset_qh")} == set(OWNED)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), owner_session(conn, logins["owner"]):
            conn.execute("SELECT * FROM portfolio_qh")
        # the role ended with the transaction, after success and after an error alike
        assert conn.execute("SELECT current_user").fetchone()[0] == "postgres"
        assert conn.execute("SELECT count(DISTINCT asset_id) FROM asset_qh").fetchone()[0] == 3
    with psycopg.connect(db) as conn:  # not autocommit: a transaction is open after a query
        conn.execute("SELECT 1")
        with pytest.raises(PermissionSetupError), owner_session(conn, logins["owner"]):
            pass


def test_dashboard_users_map_to_database_roles(db):
    from intraday.backoffice.users import User

    u_owner = User(f"wind owner {uuid.uuid4().hex[:6]}", "asset_owner", ("WND-A1",))
    u_desk = User("desk-user", "desk")
    role = dashboard_owner_role(u_owner.username)
    with psycopg.connect(db, autocommit=True) as conn:
        try:
            assert sync_dashboard_users(conn, [u_owner, u_desk]) == {role: ["WND-A1"]}
            with user_session(conn, u_owner):
                assert conn.execute("SELECT current_user").fetchone()[0] == role
                assert {r[0] for r in conn.execute("SELECT asset_id FROM asset_qh")} == {"WND-A1"}
                # trading_qh is the owner's view of it (sql/016_owner_scope.sql): the public book only;
                # the table itself stays closed
                assert {r[0] for r in conn.execute("SELECT book FROM trading_qh")} <= {"public"}
                schema = conn.execute("SELECT (current_schemas(false))[2]").fetchone()[0]
                with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                    conn.execute(sql.SQL("SELECT 1 FROM {}.trading_qh").format(sql.Identifier(schema)))
            with user_session(conn, u_desk):
                assert conn.execute("SELECT count(DISTINCT asset_id) FROM asset_qh").fetchone()[0] == 3
            summary = {r["role"]: r for r in permission_summary(conn)}
            assert summary[role]["assets"] == ["WND-A1"] and not summary[role]["login"]
            # the user is removed from the users file: the role reads nothing any more
            sync_dashboard_users(conn, [u_desk])
            with user_session(conn, u_owner):
                assert conn.execute("SELECT count(*) FROM asset_qh").fetchone()[0] == 0
        finally:
            drop_login(conn, role)


def test_a_non_superuser_dashboard_login_can_be_set_up(db):
    """The dashboard connecting as an ordinary login: an administrator with CREATEROLE runs the
    sync, which lets the login SET ROLE to each dashboard role (and nothing more)."""
    from intraday.backoffice.users import User

    admin, dash_login = _name("admin"), _name("dash")
    u_owner = User(f"o{uuid.uuid4().hex[:6]}", "asset_owner", ("SOL-A2",))
    role = dashboard_owner_role(u_owner.username)
    with psycopg.connect(db, autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE IN ROLE intraday_writer").format(sql.Identifier(admin)))
        for g in ("intraday_desk", "intraday_ops", "intraday_back_office", "intraday_asset_owner"):
            su.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(g), sql.Identifier(admin)))
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(dash_login)))
        su.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(dash_login), sql.Identifier(admin)))
    try:
        with connect_as(db, dash_login) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SET ROLE intraday_desk")  # not yet
        with connect_as(db, admin) as c:
            sync_dashboard_users(c, [u_owner])
            for r in ("intraday_desk", "intraday_ops", "intraday_back_office", role):
                c.execute(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(
                    sql.Identifier(r), sql.Identifier(dash_login)))
        with connect_as(db, dash_login) as c:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("SELECT 1 FROM asset_qh")  # INHERIT FALSE: no rights of its own
            with user_session(c, u_owner):
                assert {r[0] for r in c.execute("SELECT asset_id FROM asset_qh")} == {"SOL-A2"}
            with user_session(c, User("d", "ops")):
                assert c.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 1
    finally:
        with psycopg.connect(db, autocommit=True) as su:
            drop_login(su, role)
            for r in (dash_login, admin):
                su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(r)))
                su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(r)))


# ---------------------------------------------------------------------------------------------
# helpers and migration


def _scram_ok(verifier: str, password: str) -> bool:
    """RFC 5802 / 7677: does ``password`` match a PostgreSQL SCRAM-SHA-256 verifier?"""
    scheme, rest = verifier.split("$", 1)
    iter_salt, keys = rest.split("$")
    iterations, salt = iter_salt.split(":")
    stored_key, server_key = keys.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return (scheme == "SCRAM-SHA-256" and hashlib.sha256(client_key).digest() == base64.b64decode(stored_key)
            and hmac.new(salted, b"Server Key", hashlib.sha256).digest() == base64.b64decode(server_key))


def test_passwords_are_sent_hashed_and_names_are_quoted(db):
    weird = f'Mr. "O\'Brien"; DROP ROLE postgres -- {uuid.uuid4().hex[:4]}'
    password = "it's a \"secret\"; DROP TABLE asset_qh; --"
    with psycopg.connect(db, autocommit=True) as conn:
        try:
            create_owner_login(conn, weird, password, ["WND-A1", "WND-A1", " "])
            verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (weird,)).fetchone()[0]
            assert verifier.startswith("SCRAM-SHA-256$") and _scram_ok(verifier, password)
            assert not _scram_ok(verifier, "wrong")
            assert conn.execute("SELECT asset_id FROM asset_owners WHERE owner_role = %s", (weird,)).fetchall() == [
                ("WND-A1",)]
            # again, with other assets: the mapping is replaced, the password changed
            create_owner_login(conn, weird, "new", ["SOL-A2"])
            assert conn.execute("SELECT asset_id FROM asset_owners WHERE owner_role = %s", (weird,)).fetchall() == [
                ("SOL-A2",)]
            assert conn.execute("SELECT to_regclass('asset_qh') IS NOT NULL").fetchone()[0]
        finally:
            drop_login(conn, weird)
        for bad in (lambda: create_owner_login(conn, "intraday_desk", "x", ["A"]),
                    lambda: create_owner_login(conn, "pg_monitor", "x", ["A"]),
                    lambda: create_owner_login(conn, _name("own"), "x", []),
                    lambda: create_owner_login(conn, _name("own"), "", ["A"]),
                    lambda: create_staff_login(conn, _name("x"), "x", "asset_owner"),
                    lambda: create_owner_login(conn, "x" * 64, "x", ["A"])):
            with pytest.raises(PermissionSetupError):
                bad()


def test_a_staff_login_cannot_become_an_owner(db, logins):
    with psycopg.connect(db, autocommit=True) as conn, pytest.raises(PermissionSetupError, match="intraday_desk"):
        create_owner_login(conn, logins["desk"], "x", ["WND-A1"])


def test_the_migration_is_idempotent_and_its_roles_are_plain(db):
    text = (ROOT / "sql" / "005_permissions.sql").read_text()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(text)  # again: roles exist, policies are replaced, grants repeated
        roles = conn.execute("SELECT rolname, rolcanlogin, rolsuper, rolbypassrls, rolinherit FROM pg_roles"
                             " WHERE rolname LIKE 'intraday\\_%' ORDER BY 1").fetchall()
        forced = conn.execute("SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity"
                              " AND relnamespace = current_schema()::regnamespace ORDER BY 1").fetchall()
    assert [r[0] for r in roles] == ["intraday_asset_owner", "intraday_back_office", "intraday_desk",
                                     "intraday_ops", "intraday_web", "intraday_writer"]
    assert not any(r[1] or r[2] or r[3] for r in roles)
    assert [r[0] for r in forced] == ["asset_imbalance_qh", "asset_owners", "asset_qh", "contracts", "invoices",
                                      "technical_data"]


def _chunks(conn, table: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT c::text FROM show_chunks(%s::regclass) c", (table,))]


def test_on_timescaledb_an_owner_cannot_read_chunks_directly(db, logins):
    """Owners read the hypertables through their policies, and no chunk by name: neither the
    chunks of the seeded rows (closed by the migration's function) nor one the sink creates, which
    its own transaction closes before it commits (no moment in which it is open)."""
    with psycopg.connect(db, autocommit=True) as conn:
        if conn.execute("SELECT to_regproc('show_chunks') IS NULL").fetchone()[0]:
            pytest.skip("plain PostgreSQL: no chunks (run with DATABASE_URL of a TimescaleDB to check)")
        conn.execute("SELECT intraday_secure_children()")  # the seed inserted directly, not through the sink
        before = set(_chunks(conn, "asset_qh"))
        # the sink writes a row of a week no chunk holds yet
        far = dt.datetime(2031, 1, 6, tzinfo=dt.UTC)
        row = (OWNED[0], far, None, 1.0, None, 1.0, 1.0, "forecast", None, 0, None, False, True, far)
        write_batch(conn, {"asset_qh": {(OWNED[0], far): row}}, {})
        created = set(_chunks(conn, "asset_qh")) - before
        chunks = [*before, *created]
        assert created, "the sink's row should have made a new chunk"
    with connect_as(db, logins["owner"]) as c:
        assert {r[0] for r in c.execute("SELECT asset_id FROM asset_qh")} == set(OWNED)
        assert {r[0] for r in c.execute("SELECT asset_id FROM asset_imbalance_qh")} == set(OWNED)
        for chunk in chunks:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(f"SELECT count(*) FROM {chunk}")
    with connect_as(db, logins["desk"]) as c:  # staff may, as they read every row anyway
        assert c.execute(f"SELECT count(*) FROM {chunks[0]}").fetchone()[0] > 0


def test_the_command_line_adds_logins_and_shows_them(db, monkeypatch, capsys, tmp_path):
    from intraday.app.cli import main as cli
    from intraday.backoffice.users import add_user

    owner, staff = _name("cliown"), _name("clistaff")
    dash_user = f"d{uuid.uuid4().hex[:6]}"
    users = tmp_path / "users.json"
    add_user(users, dash_user, "pw-dash", "asset_owner", ["WND-B1"])
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("INTRADAY_NEW_PASSWORD", "from-the-environment")
    try:
        assert cli(["permissions", "add-owner", owner, "WND-A1", "SOL-A2"]) == 0
        assert cli(["permissions", "add-staff", staff, "ops"]) == 0
        assert cli(["permissions", "sync-dashboard", str(users)]) == 0
        assert cli(["permissions", "show"]) == 0
        out = capsys.readouterr().out
        assert f"{owner}: asset owner of SOL-A2 WND-A1" in out and f"{staff}: member of intraday_ops" in out
        assert f"owner:{dash_user}: WND-B1" in out
        assert cli(["permissions", "add-staff", _name("x"), "asset_owner"]) == 1  # one line on stderr, exit 1
        assert "is not one of" in capsys.readouterr().err
        assert cli(["permissions"]) == 2
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            for r in (owner, staff, dashboard_owner_role(dash_user)):
                drop_login(conn, r)


def test_the_performance_report_runs_as_staff_and_is_refused_to_owners(db, logins):
    from intraday.backoffice.report.compute import performance_report
    from intraday.backoffice.users import User

    with psycopg.connect(db, autocommit=True) as conn:
        full = performance_report(conn, T1, T2 + dt.timedelta(minutes=15))
        for role in ("desk", "ops", "back_office"):
            with user_session(conn, User("x", role)):
                got = performance_report(conn, T1, T2 + dt.timedelta(minutes=15))
            assert got["portfolio"] == full["portfolio"] and got["assets"] == full["assets"], role
        with pytest.raises(psycopg.errors.InsufficientPrivilege), owner_session(conn, logins["owner"]):
            performance_report(conn, T1, T2)


def test_no_staff_or_owner_role_can_read_or_forge_dashboard_sessions(db, logins):
    """The sessions table is the dashboard's login's alone (intraday_web)."""
    for login in logins.values():
        with connect_as(db, login) as c:
            for stmt in ("SELECT count(*) FROM dashboard_sessions",
                         "INSERT INTO dashboard_sessions (sid_hash, username, expires_at) VALUES ('x', 'y', now())"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(stmt)
