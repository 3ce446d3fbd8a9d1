"""The command line (``kai-messaging``): the composition root, the one package that imports
every layer (the gateway, the worker pools, migrations) and wires them to the settings.

``main.py`` parses the commands; ``dlq.py`` and ``fleet_status.py`` are the operator tools
it drives.
"""
