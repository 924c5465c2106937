"""The function host ("worker") and its forking zygote.

- ``python -m runtime.worker --socket PATH``: one worker process (``server``), Fission's Python
  function contract over HTTP/1.1 on a unix socket.
- ``python -m runtime.worker.zygote --control PATH``: a preloaded process that forks workers in a
  few milliseconds (``zygote``).
- ``capture``: per-request stdout/stderr/logging capture, shipped to ``$RUNTIME_LOG_SOCKET``.

Nothing here imports Django.
"""
