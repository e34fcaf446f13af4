"""Alert emails: settings (`config`), MIME building (`compose`), SMTP or `.eml` sending
(`transport`) and the idempotent warehouse outbox (`outbox`). No Dagster here."""
