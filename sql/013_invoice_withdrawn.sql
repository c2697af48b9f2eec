-- domain.md 5: the newest CRM file is the truth about every contract. An invoice of a contract
-- that the newest file drops, or whose corrected dates no longer cover the month, is withdrawn:
-- a new version in state 'withdrawn' (the earlier versions stay, as issued documents do).
ALTER TABLE invoices DROP CONSTRAINT IF EXISTS invoices_state_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_state_check
    CHECK (state IN ('draft', 'provisional', 'final', 'corrected', 'withdrawn'));
