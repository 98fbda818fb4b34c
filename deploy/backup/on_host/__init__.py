"""The backup job's code, as it runs on the web host: the standard library and nothing else.

``deploy/backup/job.py`` is the program (the unit and ``fab db.*`` run it); it ships in every
release together with this package (``deploy.backup.settings.JOB_FILES``) and imports it as a
top-level package from its own directory, so these modules import each other only relatively
and nothing from the rest of this repository. The fab side imports them as
``deploy.backup.on_host`` for the names both sides must agree on (ids, database names, errors).

- ``errors``       the job's one-line errors and the exit code of a refused restore target
- ``names``        backup ids, object names and the databases a restore may create
- ``environment``  settings from the environment; what each child process gets (rclone, libpq)
- ``processes``    children piped together, their stderr kept, bytes pumped between them
- ``dump``         the backup itself, its read-back check, and the bucket's listing
- ``status``       status.json and drill.json in the job's state directory
- ``databases``    the host's side of restores: create and load, inspect, drop
- ``cli``          the command line: ``job.py [--env-file FILE]... COMMAND``
"""
