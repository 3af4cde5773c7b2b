"""Claims: the verdict rules (shown / not shown / inconclusive, each against a negative control) as pure functions
over per-seed measurements. Below the report and the audit, which both decide through them."""
