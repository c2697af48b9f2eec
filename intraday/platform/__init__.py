"""Settings from the environment and the thin clients every process shares: Kafka, heartbeats."""
