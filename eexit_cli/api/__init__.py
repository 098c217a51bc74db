"""The library's workflows: what the commands do, as functions returning result objects.

Composes :mod:`eexit_cli.io` (files) and :mod:`eexit_cli.core` (numerics) without
click; the commands in :mod:`eexit_cli.cli` parse options, call these functions and
print. The public names are re-exported by :mod:`eexit_cli`.
"""
