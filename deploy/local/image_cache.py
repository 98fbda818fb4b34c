"""Builds the images ``image`` describes, once per recipe, into the cache.

A build goes to a temporary directory beside its final place and is renamed into place only when
complete, so an interrupted build never leaves an image that looks finished.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from deploy.local.image import ImageRecipe, image_dir, image_key, mmdebstrap_command


class ImageBuildError(Exception):
    """mmdebstrap failed; the message is one line naming the image and the build log."""


def ensure_image(recipe: ImageRecipe, root: Path, say: Callable[[str], None]) -> Path:
    """The cached image for ``recipe``, built first if absent; older images of its role pruned."""
    final = image_dir(root, recipe)
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    building = root / f".{final.name}.building"
    log = root / f"{final.name}.build.log"
    shutil.rmtree(building, ignore_errors=True)  # a build that was interrupted
    say(f"building the {recipe.role} image {image_key(recipe)} with mmdebstrap (about a minute)")
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            mmdebstrap_command(recipe, building), stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        raise ImageBuildError(f"building the {recipe.role} image failed; see {log}")
    customise(building, recipe)
    building.rename(final)
    say(f"built the {recipe.role} image in {time.monotonic() - started:.0f} s: {final}")
    _prune_other_builds(root, recipe, keep=final)
    return final


def customise(root: Path, recipe: ImageRecipe) -> None:
    """Apply the recipe's removals and files to a freshly bootstrapped root filesystem."""
    for pattern in recipe.removed:
        for path in root.glob(pattern.lstrip("/")):
            path.unlink()
    for path, content in recipe.files:
        write_into_root(root, path, content)


def write_into_root(root: Path, path: str, content: str, mode: int = 0o644) -> None:
    """Write a file inside a host's root filesystem without following a symlink out of it."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    target.write_text(content)
    target.chmod(mode)


def _prune_other_builds(root: Path, recipe: ImageRecipe, keep: Path) -> None:
    """Old images of a role are only disk space once a newer recipe is built."""
    mounts = Path("/proc/self/mountinfo").read_text()
    for old in root.glob(f"{recipe.role}-*"):
        if old != keep and old.is_dir() and str(old) not in mounts:
            shutil.rmtree(old, ignore_errors=True)
            old.with_name(f"{old.name}.build.log").unlink(missing_ok=True)
