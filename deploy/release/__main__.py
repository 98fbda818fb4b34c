"""``python -m deploy.release TASK ...``: the release tasks on their own, as `fab` runs them.

The same Fabric program and config loading as `fab`, with only this package's tasks; useful
before they are registered in the root namespace, and for running a deploy of another work tree
(``-f config.yaml`` with ``dropstack.release.source``), as the host tests do.
"""

from fabric import Config, Executor
from fabric.main import Fab
from invoke import Collection

from deploy.release import reports, tasks
from deploy.steps import exit_quietly_on_closed_pipe

TASKS = [t for m in (tasks, reports) for t in Collection.from_module(m).tasks.values()]
exit_quietly_on_closed_pipe()
program = Fab(
    name="dropstack release",
    version="0.1.0",
    namespace=Collection(
        *(t for m in (tasks, reports) for t in Collection.from_module(m).tasks.values())
    ),
    executor_class=Executor,
    config_class=Config,
)

if __name__ == "__main__":
    program.run()
