"""The command line (``kai-messaging``): the composition root, the one package that imports
every layer (the gateway, the worker pools, migrations) and wires them to the settings.

``main.py`` parses the commands; the operator tools it drives (dead letters, the fleet's
status) live in ``producer`` beside the gateway, which serves them to the console too.
"""
