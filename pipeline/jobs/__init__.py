"""Ingest jobs: the ingest's steps as one code path (activities.py) with two runners, in this process (local.py,
`jobs.engine: local`) or as durable Temporal workflows on `lorechat worker` processes (workflows.py,
temporal_activities.py, worker.py, client.py, schedules.py; `jobs.engine: temporal`). Nothing is imported here:
the workflow sandbox imports the package on every worker."""
