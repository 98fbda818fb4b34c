"""Fabric tasks and the pure functions behind them: targets, provisioning, releases, local hosts."""
