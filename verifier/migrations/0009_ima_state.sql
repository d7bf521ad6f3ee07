-- Incremental IMA: how far each node's IMA log was verified in its current
-- boot (JSON of assay_core::verify::ImaState), moved with each verdict.
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS ima_state text;
