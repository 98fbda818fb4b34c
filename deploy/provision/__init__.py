"""`fab provision`: bring a bare Debian droplet to a production web host, as facts, plan, apply.

- ``facts.py``: read-only probes of a host and their parsers, batched into one SSH round trip.
- ``operations.py``: pure steps from facts to the changes they would make.
- ``apply.py``: runs those changes (the only module here that changes a host).
- ``desired.py``, ``templates.py``, ``files.py``: the desired state as data.
- ``runner.py``: one host's steps, applied or only checked (``--check``), and the task.
"""
