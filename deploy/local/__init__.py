"""The local droplet: Debian 12 hosts in systemd-nspawn containers that stand in for DigitalOcean.

Pure modules say *what* the local stack is: ``network`` (addresses, links, ``ip`` commands),
``nftables`` (the cloud firewall and NAT as one nft table), ``image`` (the root filesystem
recipes and their cache keys), ``hosts`` (cloud-init seed, nspawn command line, SSH),
``database`` (the managed-PostgreSQL look-alike) and ``outputs`` (the inventory it writes).
``image_cache`` and ``lifecycle`` run them on this machine; ``tasks`` is the thin Fabric layer.
"""
