"""xapisim: a XenAPI pool simulator speaking xapi's wire protocol and transfer formats.

Run it with ``python -m xapisim --listen 127.0.0.1:PORT --data DIR [--demo]``. Tests and
benchmarks drive it through the real ``XenAPI`` client, plain HTTP, NBD and the ``/_sim/``
control API (``xapisim.control.SimControl``). No Django imports in this package.

NOTES.md lists the behaviours checked against xapi's and the storage manager's source.
"""
