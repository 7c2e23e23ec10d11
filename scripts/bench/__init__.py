"""The benchmarks (BENCHMARKS.md): one module a bench, each with a `main()`, run from the repository root as

    .venv/bin/python -m scripts.bench.NAME [--help]

`python -m scripts.bench` lists them. Shared parts: `benchlib` (machine facts, tables, percentiles, results),
`proc_cpu` (CPU and RSS of a process from /proc), `streamlib` (the scripted upstream and the service as their own
processes, and a raw-socket client). A bench reaches the service and the pipeline through their public seams only.
"""
