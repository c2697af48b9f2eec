-- The children of a table with row-level security (TimescaleDB's chunks of asset_qh and
-- asset_imbalance_qh; any inheritance child or partition) are readable by name by the staff
-- groups and the writer only. A query through the parent checks the parent's privileges and
-- applies its policies; a query of a child by name would do neither, and TimescaleDB copies the
-- hypertable's GRANTs to every chunk it creates (timescaledb #7830): an asset owner could read
-- every owner's rows from a chunk.
--
-- intraday_secure_children() revokes every other privilege on such children. It runs at the end
-- of every migration and inside every transaction of the sink (sink/sink.py write_batch), after
-- its upserts and before its COMMIT: a chunk the sink's rows created is closed before anyone can
-- see it. It runs as its owner (the schema's owner, who owns the chunks), SECURITY DEFINER with
-- a fixed search_path; only the writer may call it.

CREATE OR REPLACE FUNCTION intraday_secure_children() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN
        SELECT DISTINCT i.inhrelid::regclass AS child,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END AS grantee
        FROM pg_inherits i
        JOIN pg_class p ON p.oid = i.inhparent AND p.relrowsecurity
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL aclexplode(c.relacl) a
        LEFT JOIN pg_roles g ON g.oid = a.grantee
        WHERE a.grantee <> c.relowner
          AND coalesce(g.rolname, '') NOT IN ('intraday_desk', 'intraday_ops', 'intraday_back_office',
                                              'intraday_writer')
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', r.child, r.grantee);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;

REVOKE ALL ON FUNCTION intraday_secure_children() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION intraday_secure_children() TO intraday_writer;

SELECT intraday_secure_children();
