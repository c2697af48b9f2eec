"""The processors' functional core: typed events and state, pure steps, no Kafka and no Faust (see wire.py)."""
