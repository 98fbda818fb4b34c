"""bench.fab_output: step times, the release built and provisioning changes, read from the lines
deploy.steps and the release tasks print."""

from bench.fab_output import image_built, provision_changes, release_built, steps, switch_seconds

DEPLOY = """\
release 20261121150405-0123456: revision 0123456789ab, archive 41 KiB, 14 wheels for cp311 (cached)
[web-1] upload release                                changed    0.3s
[web-1] unpack release                                changed    0.6s
[web-1] python environment 9f2c1e0d5a4b3c2d           ok         0.1s
[web-1] point slot green at the release               changed    0.1s
[web-1] start slot green                              changed    1.2s
[web-1] health gate /readyz on green                  ok         0.9s
[web-1] route nginx to green                          changed    0.4s
[web-1] switch current                                changed    0.1s
[web-1] enable slot green at boot                     changed    1.1s
[web-1]   slot blue drained: no connection left after 5.2s
[web-1] stop old slot blue                            changed    5.5s
[web-1] prune old releases (keep 5)                   ok         0.2s
deploy of 20261121150405-0123456 done in 7.9s
"""


def test_steps_are_read_with_host_status_and_seconds():
    found = steps(DEPLOY)
    assert len(found) == 11
    assert found[0].host == "web-1" and found[0].name == "upload release" and found[0].changed
    assert found[2].name == "python environment 9f2c1e0d5a4b3c2d" and not found[2].changed
    assert found[5].name == "health gate /readyz on green" and found[5].seconds == 0.9


def test_switch_seconds_add_up_from_pointing_the_slot_to_stopping_the_old_one():
    assert switch_seconds(DEPLOY) == {"web-1": round(0.1 + 1.2 + 0.9 + 0.4 + 0.1 + 1.1 + 5.5, 1)}
    assert switch_seconds("nothing here") == {}


def test_release_built_is_the_name_the_deploy_announced():
    assert release_built(DEPLOY) == "20261121150405-0123456"
    assert (
        release_built("release 20261121150405-0123456-dirty: ...") == "20261121150405-0123456-dirty"
    )
    assert release_built("no release") is None


def test_provision_changes_per_host():
    out = (
        "provisioning web-1, web-2 from x\nweb-1: 24 steps, 0 changed\nweb-2: 24 steps, 3 changed\n"
    )
    assert provision_changes(out) == {"web-1": 0, "web-2": 3}


def test_image_built_only_when_up_had_to_build_one():
    assert image_built("local: building the web image 1a2b with mmdebstrap (about a minute)\n")
    assert not image_built("local: web-1: fresh root on the web image, booting\n")
