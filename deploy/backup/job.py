"""The backup job and the host's side of restores: one stdlib-only program run on the web host.

It ships with every release (``<app_root>/current/deploy/backup/job.py``, with the package
``on_host/`` beside it: ``deploy.backup.settings.JOB_FILES``) and runs under the host's own
``python3``, so it imports nothing but the standard library and that package. The systemd unit
runs ``job.py backup``; ``fab db.*`` runs the other commands over SSH; the tests run this same
file on this machine. Its settings come from the environment (systemd ``EnvironmentFile=``) or
from ``--env-file`` (the same files, for ad-hoc runs); the commands are in
``on_host/cli.py``'s ``USAGE``, printed when it is run without arguments.

Secrets never reach a command line: libpq gets a PGPASSFILE in a private directory, rclone its
remote from RCLONE_CONFIG_BACKUPS_* variables. Children get an explicit environment, never this
process's own (a machine's AWS_CA_BUNDLE or SSL_CERT_FILE would otherwise steer rclone).
"""

import os
import sys

if __name__ == "__main__":
    # On a host nothing of this repository is installed: the package beside this file is found
    # through this file's own directory (put first here, since PYTHONSAFEPATH would leave it out).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from on_host.cli import main

    sys.exit(main(sys.argv[1:]))
