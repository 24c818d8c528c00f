"""The local stack runner: Bottega's infrastructure as supervised local processes.

A :class:`~bottega.stack.spec.ServiceSpec` declares one service: how to prepare its state, the
command that runs it, the ports it binds, what it depends on, and the real health check that
says it is ready. :class:`~bottega.stack.runner.LocalStack` starts specs in dependency order,
waits on their health checks, writes pid files and logs under ``.bottega/``, and stops exactly the
processes it started.
"""
