"""``python -m deploy.release TASK ...``: the release tasks on their own, as `fab` runs them.

The same Fabric program and config loading as `fab`, with only this package's tasks; useful
before they are registered in the root namespace, and for running a deploy of another work tree
(``-f config.yaml`` with ``dropstack.release.source``), as the host tests do.
"""

from fabric import Config, Executor
from fabric.main import Fab
from invoke import Collection

from deploy.release import tasks

program = Fab(
    name="dropstack release",
    version="0.1.0",
    namespace=Collection.from_module(tasks),
    executor_class=Executor,
    config_class=Config,
)

if __name__ == "__main__":
    program.run()
