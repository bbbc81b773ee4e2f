"""`claim-scrubber review`: the coder's page over the result topics
(docs/consuming-results/review-page.md)."""
