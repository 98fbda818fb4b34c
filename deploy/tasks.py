"""The task namespace `fab` sees. Each concern's tasks live in their own module."""

from invoke import Collection

from deploy.local import tasks as local_tasks

namespace = Collection()
namespace.add_collection(Collection.from_module(local_tasks), name="local")
