-- Placeholder: version 6 belongs to work on another branch. Delete this file when that
-- branch's migration of this number is merged; nothing depends on it.
SELECT 1;
