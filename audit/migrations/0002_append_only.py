"""The database refuses to change or remove an audit record.

UPDATE and DELETE raise for every row; the one exception is retention (audit.services.prune),
whose transaction names a time with ``set_config('faas_portal.audit_prune_before', ...)`` and may
delete rows older than it. TRUNCATE raises too, unless the session sets
``faas_portal.audit_truncate`` to ``on``: Django's ``flush`` empties tables with TRUNCATE, and
the test suite empties the database between tests that commit (testsupport/fixtures.py).
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION audit_record_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prune_before text := current_setting('faas_portal.audit_prune_before', true);
BEGIN
    IF TG_OP = 'DELETE' AND coalesce(prune_before, '') <> '' AND OLD.at < prune_before::timestamptz THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'TRUNCATE' AND current_setting('faas_portal.audit_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit records are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_record_append_only BEFORE UPDATE OR DELETE ON audit_auditrecord
    FOR EACH ROW EXECUTE FUNCTION audit_record_refuse();
CREATE TRIGGER audit_record_no_truncate BEFORE TRUNCATE ON audit_auditrecord
    FOR EACH STATEMENT EXECUTE FUNCTION audit_record_refuse();
"""

BACKWARD = """
DROP TRIGGER audit_record_no_truncate ON audit_auditrecord;
DROP TRIGGER audit_record_append_only ON audit_auditrecord;
DROP FUNCTION audit_record_refuse();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
