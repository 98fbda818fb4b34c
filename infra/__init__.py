"""The Pulumi program for dropstack's DigitalOcean stack, and the pure functions it is built from.

The pure modules (``cloudinit``, ``firewall_rules``) carry no Pulumi types so the local droplet
(``deploy/local``) can boot and firewall its hosts from exactly the same data.
"""
