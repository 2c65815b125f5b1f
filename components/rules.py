"""Rules shared by the settings and the policy pack: one source of truth for each.

Standard library only, so the policy pack (its own virtualenv, no pulumi-docker) can
import it too. Each function answers one question the same way wherever it is asked.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple, Optional, Union

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
# Convex tags every image with the commit SHA of its release (full, or as git shortens it).
_COMMIT_TAG_PATTERN = re.compile(r"^[0-9a-f]{7,40}$")
CONVEX_REPOSITORIES = {"get-convex/convex-backend": "backend",
                       "get-convex/convex-dashboard": "dashboard"}
# The numeric version a tag starts with: "17.6" of "17.6-alpine", "3.12.7" of
# "3.12.7-slim-bookworm".
_TAG_VERSION_PATTERN = re.compile(r"^v?(\d+(?:\.\d+)*)")
# Images whose upstream numbers releases major.minor (PostgreSQL since 10: 17.6 is one
# build line's patch release); every other image needs major.minor.patch (caddy 2.10.2,
# python 3.12.7). Matched on the repository's last path segment, so mirrors count too.
TWO_PART_VERSION_IMAGES = frozenset({"postgres"})
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


def image_ref_problem(ref: str, strict: bool = False) -> Optional[str]:
    """Why `ref` is not a well-formed, pinned image reference; None when it is.

    Pinned means a full sha256 digest, or a tag that is not a moving one. `strict` (every
    stack but dev ones) also refuses floating version tags: see `tag_problem`.
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
    return tag_problem(parsed.repository, parsed.tag, strict)


def tag_problem(repository: str, tag: str, strict: bool) -> Optional[str]:
    """Why a (well-formed) tag of `repository` does not pin one build; None when it does.

    Moving tags (latest, main, ...) never pin. With `strict`, a Convex image needs a
    release's commit SHA, and any other image the full version of its upstream:
    major.minor.patch, or major.minor for TWO_PART_VERSION_IMAGES. `17`, `2`, `alpine`,
    `canary` or `latest-arm64` name a line of releases that moves.
    """
    if is_moving_tag(tag):
        return f"uses the moving tag {tag!r}"
    if not strict:
        return None
    if convex_component(repository) is not None:
        if not _COMMIT_TAG_PATTERN.fullmatch(tag):
            return (f"uses the tag {tag!r}, which is not a release: Convex images are tagged "
                    "with the commit SHA of each release, and only those stay put")
        return None
    needed = 2 if repository.rsplit("/", 1)[-1] in TWO_PART_VERSION_IMAGES else 3
    version = _TAG_VERSION_PATTERN.match(tag)
    if version is None or version.group(1).count(".") + 1 < needed:
        form = "major.minor" if needed == 2 else "major.minor.patch"
        return (f"uses the floating tag {tag!r}, which moves to each new upstream release; "
                f"outside dev stacks the tag must start with the full {form} version")
    return None


def convex_component(repository: str) -> Optional[str]:
    """'backend' or 'dashboard' for a Convex image repository (any registry or mirror)."""
    repository = repository.lower()
    for path, component in CONVEX_REPOSITORIES.items():
        if repository == path or repository.endswith("/" + path):
            return component
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


# Stacks the production-only policies apply to (the policy pack's prodStackPattern
# default), matched case-insensitively with re.search: prod, production, prd, live, and
# each of them with a -suffix (prod-eu, Live-2).
PRODUCTION_STACK_PATTERN = r"^(prod|production|prd|live)(-.*)?$"


def is_production_stack(stack: str, pattern: str = PRODUCTION_STACK_PATTERN) -> bool:
    return re.search(pattern, stack, re.IGNORECASE) is not None


IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def bind_address(text: str) -> Optional[IPAddress]:
    """The address a published port binds to, or None when `text` is not an IP literal.

    An IPv4-mapped IPv6 address (::ffff:0.0.0.0) is the IPv4 address it maps: Docker
    (Go's net package) binds it as that address, so ::ffff:0.0.0.0 is every IPv4
    interface. `::`, `::0` and `0:0:0:0:0:0:0:0` are all the unspecified IPv6 address.
    Shorthands the C library accepts (`0`, `0.0.0.00`) are not IP literals here.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# Parts of an environment variable name that say its value is a credential.
_SECRET_NAME_FRAGMENTS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "PRIVATE")
_SECRET_NAME_WORDS = frozenset({"KEY", "KEYS", "APIKEY", "DSN", "AUTH", "OAUTH", "PWD"})


def looks_secret_env_name(name: str) -> bool:
    """Whether a variable name reads like a credential: STRIPE_SECRET_KEY, API_KEY,
    GITHUB_TOKEN, SMTP_PASSWORD, SENTRY_DSN, BASIC_AUTH_USER, GOOGLE_CREDENTIALS.

    SECRET, TOKEN, PASSWORD, PASSWD, CREDENTIAL and PRIVATE count anywhere; KEY, DSN and
    AUTH only as a whole word between underscores (not MONKEY_PATCH or AUTHOR_NAME).
    """
    upper = name.upper()
    return (any(fragment in upper for fragment in _SECRET_NAME_FRAGMENTS)
            or any(word in _SECRET_NAME_WORDS for word in upper.split("_")))
