"""The executor and scheduler daemons: their loops, signals, logging and entry points.

``multiflexi-executor`` (:mod:`.executor`) claims due jobs and runs them in a bounded pool;
``multiflexi-scheduler`` (:mod:`.scheduler`) turns run-template schedules into jobs. Both
are one-iteration ``step(now) -> bool`` functions driven by :func:`.loop.run_loop`.
"""
