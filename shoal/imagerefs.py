"""Image references as Docker reads them, for ``shoal commit REPO[:TAG]``.

The grammar is Docker's (distribution's ``reference`` package): an optional
registry host (with a port) before the first slash, then path components in
lower case separated by slashes, then an optional tag. The CLI checks a
reference before it sends it and the ControlAPI checks it again (the client
is never trusted), so both read it with this one module. Digests have no
place in a commit (the image does not exist yet) and are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# distribution/reference: a path component, a domain component, a tag.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
REPOSITORY = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*")
TAG = re.compile(r"[\w][\w.-]{0,127}")
# Docker's limit on a repository name.
MAX_NAME = 255
DEFAULT_TAG = "latest"
_WHAT = "a repository like registry.example.com:5000/team/app, in lower case"


@dataclass(frozen=True)
class CommitRef:
    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


def check_repository(repository: str) -> None:
    """ValueError naming what is wrong unless Docker would take it."""
    if not repository:
        raise ValueError(f"repository: must not be empty ({_WHAT})")
    if len(repository) > MAX_NAME:
        raise ValueError(f"repository: at most {MAX_NAME} characters, got {len(repository)}")
    if not REPOSITORY.fullmatch(repository):
        raise ValueError(f'repository "{repository}": invalid reference format ({_WHAT})')


def check_tag(tag: str) -> None:
    if not TAG.fullmatch(tag):
        raise ValueError(
            f'tag "{tag}": invalid (letters, digits, "_", "." and "-", at most 128, '
            'not starting with "." or "-")'
        )


def parse_commit_ref(text: str) -> CommitRef:
    """REPO[:TAG] (tag ``latest`` when none is given); ValueError when Docker
    would refuse it."""
    if "@" in text:
        raise ValueError(f'"{text}": a digest cannot be given to commit (use REPO[:TAG])')
    repository, tag = text, DEFAULT_TAG
    last = text.rfind(":")
    if last > text.rfind("/"):  # a colon after the last slash starts the tag
        repository, tag = text[:last], text[last + 1 :]
    check_repository(repository)
    check_tag(tag)
    return CommitRef(repository, tag)


# What `docker commit --change` accepts.
CHANGE_INSTRUCTIONS = frozenset(
    {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR"}
)


def check_change(change: str) -> None:
    """ValueError unless change is one Dockerfile instruction commit applies."""
    word = change.strip().split(maxsplit=1)[0].upper() if change.strip() else ""
    if word not in CHANGE_INSTRUCTIONS:
        allowed = ", ".join(sorted(CHANGE_INSTRUCTIONS))
        raise ValueError(f'change "{change[:60]}": must be one instruction of {allowed}')
