"""What information governance officers use: the audit log's checks, the review queue, disclosures."""
