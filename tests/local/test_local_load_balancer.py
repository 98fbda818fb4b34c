"""The local load balancer's HAProxy configuration: DigitalOcean's health check, from the same
object infra/ reads, and a config the real haproxy accepts."""

import re
import shutil
import subprocess

from deploy.local.load_balancer import haproxy_config
from deploy.local.network import plan_stack
from infra.load_balancer_policy import HEALTH_CHECK, HealthCheck


def config(web_count=3, check=HEALTH_CHECK):
    plan = plan_stack(web_count)
    return haproxy_config(plan.lb, plan.web, check)


def test_every_web_host_is_a_checked_backend_on_its_vpc_address():
    servers = re.findall(r"^\s+server (\S+) (\S+) check$", config(), re.M)
    assert servers == [("web-1", "198.18.1.11:80"), ("web-2", "198.18.1.12:80"),
                       ("web-3", "198.18.1.13:80")]  # fmt: skip


def test_health_check_is_digitaloceans_as_infra_declares_it():
    text = config()
    assert f"uri {HEALTH_CHECK.path} " in text
    assert f"timeout check {HEALTH_CHECK.response_timeout_seconds}s" in text
    assert (
        f"default-server inter {HEALTH_CHECK.check_interval_seconds}s "
        f"fall {HEALTH_CHECK.unhealthy_threshold} rise {HEALTH_CHECK.healthy_threshold}"
    ) in text
    other = config(check=HealthCheck(check_interval_seconds=3, healthy_threshold=2))
    assert "inter 3s fall 3 rise 2" in other


def test_listens_on_the_inventorys_load_balancer_address():
    assert "bind 198.18.0.2:80" in config()


def test_the_real_haproxy_accepts_it(tmp_path):
    assert shutil.which("haproxy"), "bin/setup installs haproxy"
    path = tmp_path / "haproxy.cfg"
    path.write_text(config())
    done = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
