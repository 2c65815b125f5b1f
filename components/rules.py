"""Rules shared by the settings and the policy pack: one source of truth for each.

Standard library only, so the policy pack (its own virtualenv, no pulumi-docker) can
import it too. Each function answers one question the same way wherever it is asked.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

# Tags that name a moving target rather than one build; compared case-insensitively
# (Docker tags are case-sensitive, but `Latest` is just as unpinned as `latest`).
MOVING_TAGS = frozenset({"latest", "main", "master", "stable", "edge", "nightly", "dev"})

# Lowercase letters, digits and single dashes: what Convex accepts as an instance name
# and what is safe in container, volume and network names and in `name|` key prefixes.
INSTANCE_NAME_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
INSTANCE_NAME_MAX_LEN = 63

# OCI distribution grammar, simplified to what Docker itself accepts for references.
_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPOSITORY_PATTERN = re.compile(
    r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?/)?"  # registry host[:port]/
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


class ImageRef(NamedTuple):
    repository: str
    tag: Optional[str]
    digest: Optional[str]


def parse_image_ref(ref: str) -> ImageRef:
    """Split `[registry[:port]/]path[:tag][@digest]`; a `:` before the last `/` is a port."""
    digest: Optional[str] = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag: Optional[str] = None
    slash, colon = ref.rfind("/"), ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1:]
    return ImageRef(ref, tag, digest)


def image_ref_problem(ref: str) -> Optional[str]:
    """Why `ref` is not a well-formed, pinned image reference; None when it is.

    Pinned means an exact tag that is not a moving one, or a full sha256 digest.
    """
    if not ref or len(ref) > 512 or any(c.isspace() for c in ref):
        return "is not an image reference"
    parsed = parse_image_ref(ref)
    if not _REPOSITORY_PATTERN.fullmatch(parsed.repository):
        return "is not an image reference (lowercase repository path, optional registry)"
    if parsed.digest is not None:
        if not _DIGEST_PATTERN.fullmatch(parsed.digest):
            return "has a digest that is not sha256: followed by 64 lowercase hex digits"
        return None
    if parsed.tag is None:
        return "has no tag, so Docker resolves it to the moving tag latest"
    if not _TAG_PATTERN.fullmatch(parsed.tag):
        return "has a tag Docker does not accept"
    if is_moving_tag(parsed.tag):
        return f"uses the moving tag {parsed.tag!r}"
    return None


def is_moving_tag(tag: str) -> bool:
    return tag.lower() in MOVING_TAGS


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_PATTERN.fullmatch(tag))


def is_valid_instance_name(name: str) -> bool:
    return len(name) <= INSTANCE_NAME_MAX_LEN and bool(INSTANCE_NAME_PATTERN.fullmatch(name))


def is_dev_stack(stack: str) -> bool:
    """Dev stacks may use moving tags and skip confirmation; everything else is guarded."""
    return stack in ("dev", "local") or stack.startswith("dev-")
