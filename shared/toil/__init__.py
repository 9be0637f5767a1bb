"""Shoal as a Toil batch system (``--batchSystem shoal``); needs the ``toil`` extra (``pip install 'shoal[toil]'``).

``tracker`` and ``settings`` do not import Toil; ``batch_system`` does, and is imported only by the factory in
the top-level shim ``toil_batch_system_shoal``.
"""
