-- Plans, quotas and key scopes.
--
-- A plan's limits are stored as JSON (`PlanLimits`); an account with no plan is on the
-- `default` plan, whose limits are the built-in defaults until an operator writes a row for it.
--
-- Quota: each accepted job reserves its estimated seconds in `usage` for the month it was
-- accepted in, by a guarded update in the transaction that inserts it. The trigger below
-- settles the reservation when the job ends: the reserved seconds are released and the
-- seconds actually processed (`charged_seconds`, written with the job's success) are added to
-- `used_seconds`. A failed or canceled job is charged nothing. The same trigger gives back the
-- job's slot in `accounts.active_jobs`, the counter the concurrent-job limit is guarded on.

CREATE TABLE plans (
    name       TEXT    NOT NULL PRIMARY KEY,
    limits     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

ALTER TABLE accounts ADD COLUMN plan TEXT REFERENCES plans (name);
ALTER TABLE accounts ADD COLUMN active_jobs INTEGER NOT NULL DEFAULT 0 CHECK (active_jobs >= 0);

ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '["jobs:read","jobs:write"]';
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;

CREATE TABLE usage (
    account_id       TEXT    NOT NULL REFERENCES accounts (id),
    -- the calendar month (UTC), `YYYY-MM`
    period           TEXT    NOT NULL,
    used_seconds     REAL    NOT NULL DEFAULT 0 CHECK (used_seconds >= 0),
    reserved_seconds REAL    NOT NULL DEFAULT 0 CHECK (reserved_seconds >= 0),
    PRIMARY KEY (account_id, period)
) STRICT;

-- What a job reserved, in which period, whether it holds an active-job slot, and what it was
-- charged when it succeeded.
ALTER TABLE jobs ADD COLUMN usage_period TEXT;
ALTER TABLE jobs ADD COLUMN reserved_seconds REAL NOT NULL DEFAULT 0 CHECK (reserved_seconds >= 0);
ALTER TABLE jobs ADD COLUMN holds_slot INTEGER NOT NULL DEFAULT 0 CHECK (holds_slot IN (0, 1));
ALTER TABLE jobs ADD COLUMN charged_seconds REAL;
CREATE INDEX jobs_account_period ON jobs (account_id, usage_period) WHERE usage_period IS NOT NULL;

CREATE TRIGGER jobs_settle_usage
AFTER UPDATE OF state ON jobs
WHEN NEW.state IN ('succeeded', 'failed', 'canceled')
 AND OLD.state NOT IN ('succeeded', 'failed', 'canceled')
BEGIN
    UPDATE usage SET
        reserved_seconds = MAX(0, reserved_seconds - NEW.reserved_seconds),
        used_seconds = used_seconds
            + CASE WHEN NEW.state = 'succeeded' THEN COALESCE(NEW.charged_seconds, 0) ELSE 0 END
    WHERE account_id = NEW.account_id AND period = NEW.usage_period;
    UPDATE accounts SET active_jobs = MAX(0, active_jobs - 1)
    WHERE id = NEW.account_id AND NEW.holds_slot = 1;
END;
