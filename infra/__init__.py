"""The Pulumi program for dropstack's DigitalOcean stack, and the pure functions it is built from.

``__main__.py`` validates the configuration (``settings``) and declares one component per tier
(``network``, ``web``, ``database``); ``outputs`` names what the stack exports. The pure modules
(``cloudinit``, ``firewall_rules``) carry no Pulumi types so the local droplet (``deploy/local``)
can boot and firewall its hosts from exactly the same data. ``policy/`` is the CrossGuard pack.
"""
