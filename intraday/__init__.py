"""intraday: streaming intraday monitoring for a renewable portfolio on the German intraday market.

The shared package holds what every part needs and what must not depend on Kafka, the database
or the web: quarter-hour arithmetic (:mod:`intraday.qh`), the topic contract and the processors' topology (:mod:`intraday.topics`), the event schemas
(:mod:`intraday.events`) and the settings read once from the environment (:mod:`intraday.config`).
"""

__version__ = "0.1.0"
