"""streamwise's tests. A package, so that pytest puts the repository root on ``sys.path``
(its rootdir-based ``prepend`` import) and the tests, the test models under ``models/`` and
the scripts in ``scripts/`` import the shared helpers as ``tests.support``, with no
``sys.path`` edits of their own."""
