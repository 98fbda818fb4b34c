"""Releases: build once, ship to every host, switch traffic behind a health gate, roll back.

Modules, in the order a deploy uses them:

- ``layout``   where a release and its parts live on a host, and how releases are named;
- ``build``    the source archive and the wheelhouse, built once on the machine running fab;
- ``lock``     the per-host deploy lock: its holder record and when a held lock is stale;
- ``commands`` pure builders of the shell commands the release steps run on a host;
- ``state``    one probe of a host's releases, slots and services, parsed into data;
- ``plan``     pure decisions: idle slot, rollback target, what to prune, the dry-run plan;
- ``audit``    the JSON-lines audit log each host keeps;
- ``host``     the steps themselves, run over a Fabric connection;
- ``tasks``    the ``fab deploy / rollback / releases / status / logs / unlock`` tasks.
"""
