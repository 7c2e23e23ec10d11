"""The composition root: `lorechat serve`, `ask` and `doctor` join the service (backend) to the pipeline here,
the one place that imports both and passes the pipeline's functions in."""
