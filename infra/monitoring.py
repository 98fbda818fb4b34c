"""Alerts as code: monitor alerts on the droplets, the database, the Redis tier and the load
balancer, and an
uptime check on the site with its alerts, all notifying the stack's e-mail addresses and Slack.

What is watched and the thresholds are data in ``alert_policy``; this module only declares them.
"""

from __future__ import annotations

import pulumi
import pulumi_digitalocean as digitalocean

from infra import alert_policy
from infra.settings import Settings


class Monitoring(pulumi.ComponentResource):
    """The stack's alert policies (``alert_policy.monitor_alerts``) and, on ``url``, one uptime
    check with ``alert_policy.uptime_alerts``.

    ``load_balancer_id`` is None without a load balancer, ``redis_cluster_id`` without the
    Redis tier; their alerts are then left out.
    """

    def __init__(
        self,
        name: str,
        settings: Settings,
        *,
        web_tag: pulumi.Input[str],
        database_cluster_id: pulumi.Input[str],
        load_balancer_id: pulumi.Input[str] | None,
        url: pulumi.Input[str],
        redis_cluster_id: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("dropstack:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        emails = list(settings.alert_emails) or None
        # The webhook URL is the credential: secret in the state as it is in the config.
        slack = [
            (channel, pulumi.Output.secret(webhook))
            for channel, webhook in alert_policy.slack_targets(settings)
        ]
        scopes: dict[str, dict[str, object]] = {
            alert_policy.WEB_TAG: {"tags": [web_tag]},
            alert_policy.DATABASE: {"entities": [database_cluster_id]},
        }
        if load_balancer_id is not None:
            scopes[alert_policy.LOAD_BALANCER] = {"entities": [load_balancer_id]}
        if redis_cluster_id is not None:
            scopes[alert_policy.REDIS] = {"entities": [redis_cluster_id]}

        self.monitor_alerts = [
            digitalocean.MonitorAlert(
                f"{name}-{spec.key}",
                type=spec.type,
                compare=spec.compare,
                value=spec.value,
                window=spec.window,
                description=spec.description(name),
                enabled=True,
                alerts=digitalocean.MonitorAlertAlertsArgs(
                    emails=emails,
                    slacks=[
                        digitalocean.MonitorAlertAlertsSlackArgs(channel=channel, url=webhook)
                        for channel, webhook in slack
                    ]
                    or None,
                ),
                **scopes[spec.scope],
                opts=child,
            )
            for spec in alert_policy.monitor_alerts(
                settings,
                load_balancer=load_balancer_id is not None,
                redis=redis_cluster_id is not None,
            )
        ]

        # The type follows the setting alone; the target may wait for the site's address.
        check_type = alert_policy.uptime_check_target(settings, "")[0]
        target = pulumi.Output.from_input(url).apply(
            lambda address: alert_policy.uptime_check_target(settings, address)[1]
        )
        self.uptime_check = digitalocean.UptimeCheck(
            f"{name}-site",
            name=f"{name}-site",
            type=check_type,
            target=target,
            regions=list(settings.uptime_regions),
            enabled=True,
            opts=child,
        )
        notifications = [
            digitalocean.UptimeAlertNotificationArgs(
                emails=emails,
                slacks=[
                    digitalocean.UptimeAlertNotificationSlackArgs(channel=channel, url=webhook)
                    for channel, webhook in slack
                ]
                or None,
            )
        ]
        self.uptime_alerts = [
            digitalocean.UptimeAlert(
                f"{name}-site-{spec.key}",
                name=f"{name}-site-{spec.key}",
                check_id=self.uptime_check.id,
                type=spec.type,
                period=spec.period,
                threshold=spec.threshold,
                comparison=spec.comparison,
                notifications=notifications,
                opts=child,
            )
            for spec in alert_policy.uptime_alerts(settings)
        ]
        self.register_outputs(
            {
                "monitor_alerts": [alert.uuid for alert in self.monitor_alerts],
                "uptime_check": self.uptime_check.id,
                "uptime_alerts": [alert.id for alert in self.uptime_alerts],
            }
        )
