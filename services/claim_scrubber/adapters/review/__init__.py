"""`claim-scrubber review`: the coder's page over the result topics (contract section 12)."""
