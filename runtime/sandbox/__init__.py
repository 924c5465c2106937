"""Sandboxes for untrusted code: a tenant's functions (the runtime) and its builds (the portal).

Built on bubblewrap (``bwrap``) and util-linux's ``setpriv``, both Debian packages:

- ``bwrap``, started by root, makes new mount, pid, network, IPC, UTS and cgroup namespaces, a
  root filesystem holding only what is bound into it (read-only), a fresh ``/proc`` of the new pid
  namespace and a minimal ``/dev``; it dies with its parent and sets ``no_new_privs``;
- inside it, ``setpriv`` drops to the sandbox's own unprivileged uid and gid with no
  supplementary groups and empty capability sets, then executes the command.

Why root first and the uid drop inside: bwrap run by an unprivileged user cannot bind paths below
directories that user may not enter (the interpreter under ``/root/.pyenv``), and bwrap run by root
with a user namespace maps the sandbox to real root. This order gives a real, unprivileged uid that
owns nothing on the host.

Modules: ``bwrap`` (the command line, pure), ``host`` (what the machine offers: tools, the
interpreter's paths, its own networks), ``uids`` (one uid per tenant), ``cgroups`` (memory and
pids limits per worker), ``network`` (no network, or egress through slirp4netns to allowed
addresses only), ``tenant`` (the runtime's per-tenant zygote sandboxes).
"""
