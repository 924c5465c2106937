"""Asynchronous invocation, as Lambda's ``InvocationType: Event``: accepted at once (202 and a
request id), run later with retries, kept when it fails.

Accepting (``queue``). The router accepts a request carrying ``X-Faas-Invocation-Type: Event``
(matched as any call is: the trigger, the weights, the path the function sees and its headers are
decided then), and the control API a call to a function by name. Either appends the request, as it
will be forwarded, to its namespace's Redis stream. A namespace holds at most ``queue_limit``
events (queued, running or waiting for a retry); beyond, 429, so one tenant cannot fill Redis.
Without Redis, 503.

Running (``dispatcher``). One dispatcher per runtime reads every namespace's stream through a
consumer group and calls the function through its ``Caller`` (``caller``: the runtime's calls
``call_function``) with the event's request id (the function's output is logged under it): at
most ``concurrency`` events at once, at most half of
them one namespace's, and never more at once for one function than it can take (its concurrency
times its requests per pod), so the dispatcher does not throttle itself. An entry is acknowledged,
and deleted, only in the transaction that records its outcome: a runtime killed during a call
leaves it pending, and the next start claims it (``XAUTOCLAIM``). Delivery is at least once.

Outcomes. Below 400 is a success. 429 (the function or its namespace is at its limit, or the
function says so) is a throttle: tried again later (backoff doubling up to 300 x ``backoff``), not
counted as an attempt, until the event's maximum age. Any other status (the function's error, a
crash, a timeout, a function that is not deployed) is a failure: retried after ``backoff``, then
2 x ``backoff``, up to the function's retries, then dead-lettered (``RetriesExhausted``). An event
older than its function's maximum age is dead-lettered without a call (``EventAgeExceeded``). A
retry waits in a sorted set per namespace, with its attempt count, and goes back to the stream
when due.

Per function, from the Function's annotations (Lambda's ``MaximumRetryAttempts`` and
``MaximumEventAgeInSeconds``): ``faas-portal.io/async-retries`` 0..2 (default 2) and
``faas-portal.io/async-max-event-age`` 60..21600 seconds (default 21600). A bad value is logged and
the default used (``records.policy_of``).

Dead letters are kept per function (a stream of the last 10,000) with the request, the last error
(status and the first 4 KB of the body), attempts, request id and times. The control API lists
them newest first, redrives them (each becomes a new event: attempts reset, a new request id, the
old one in ``redriveOf``) and purges them. A runtime's keys are its own (``records.keyspace``:
named by its state directory), so runtimes sharing a Redis never take each other's events.

On Kubernetes, where Fission's router has no queue, the portal runs the same queue and
dispatcher with its own caller and keys (dataplane/backends/k8s_async.py): accepted by the
portal, called through Fission's router.
"""
