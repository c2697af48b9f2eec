"""intraday: streaming intraday monitoring for a renewable portfolio on the German intraday market.

Its subpackages are the layers of the flow, each importing only those below it: ``app`` (command
line, supervisor), ``dashboard``, ``backoffice``, ``readmodels``, then ``sink`` | ``processing`` |
``ingest`` side by side, ``platform``, ``contract`` and the pure ``core``.
"""

__version__ = "0.1.0"
