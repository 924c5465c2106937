"""Event sources of the local runtime: time triggers (``timers``), message-queue consumers
(``queues``) and asynchronous invocations (``asynchronous``). Each calls functions through
``runtime.invoke.call_function``, as the router does, and is reconciled from the stored objects
by ``Runtime.apply``."""
