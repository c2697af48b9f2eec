"""The wire contract: topic names, keys and partitioning, who reads what, and the event schemas."""
