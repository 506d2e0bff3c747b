"""The comparison row of `cargo bench --bench python`: the community Python client (PyPI
`camunda-external-task-client-python3`) running the bench's one-line function in its own
process, against the engine at sys.argv[1]. Runs until killed."""
import logging
import sys

from camunda.external_task.external_task_worker import ExternalTaskWorker

logging.disable(logging.CRITICAL)


def handle(task):
    return {"doubled": task["variables"]["n"] * 2}


def action(task):
    return task.complete(handle({"variables": task.get_variables()}))


# `sorting: []`: the client sends `null` by default, which real Camunda takes and the in-repo
# engine refuses (400 at `sorting`).
config = {
    "maxTasks": 10,
    "lockDuration": 10000,
    "asyncResponseTimeout": 5000,
    "sleepSeconds": 0,
    "sorting": [],
}
ExternalTaskWorker("bench-python-client", base_url=sys.argv[1], config=config).subscribe(
    ["double"], action
)
