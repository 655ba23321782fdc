"""Secret and config references: the rules every spec must follow
(shoal.rules.validate), the CLI's flags (shoal.cli.file_flags), and the
manager's record of who uses which name (controlapi.references)."""

from __future__ import annotations

import pytest

from shoal import specs
from shoal.cli.client import CLIError
from shoal.cli.file_flags import change_refs, parse_file_ref
from shoal.manager.controlapi.references import Holder, used_by
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits, validate
from shoal.rules.errors import InvalidRequest


def spec_with(*secrets: pb.FileReference, user: str = "") -> pb.ServiceSpec:
    spec = pb.ServiceSpec(name="web")
    spec.task.container.image = "app:1"
    spec.task.container.secrets.extend(secrets)
    spec.task.container.user = user
    specs.apply_defaults(spec)
    return spec


def test_good_references_and_users_pass() -> None:
    validate.validate_service_spec(
        spec_with(
            pb.FileReference(name="db_pass"),
            pb.FileReference(name="db_pass", target="/etc/db/pass", uid="1000", gid="0", mode=0o400),
            pb.FileReference(name="tls.key", target="tls/key"),
            user="1000:1000",
        )
    )
    validate.validate_service_spec(spec_with(user="nobody"))


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (pb.FileReference(name=""), "must not be empty"),
        (pb.FileReference(name="bad/name"), "invalid"),
        (pb.FileReference(name="x" * 65), "at most 64"),
        (pb.FileReference(name="s", target="../escape"), "without empty"),
        (pb.FileReference(name="s", target="a//b"), "without empty"),
        (pb.FileReference(name="s", target="/"), "without empty"),
        (pb.FileReference(name="s", uid="root"), "uid must be a number"),
        (pb.FileReference(name="s", gid="-1"), "gid must be a number"),
        (pb.FileReference(name="s", mode=0o1777), "mode must be between 0 and 0777"),
    ],
)
def test_bad_references_are_refused_naming_the_field(ref: pb.FileReference, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        validate.validate_service_spec(spec_with(ref))


def test_two_files_at_one_target_and_too_many_references_are_refused() -> None:
    with pytest.raises(InvalidRequest, match='two secrets have the target "t"'):
        validate.validate_service_spec(
            spec_with(pb.FileReference(name="a", target="t"), pb.FileReference(name="t"))
        )
    many = [pb.FileReference(name=f"s{i}") for i in range(limits.MAX_FILE_REFS + 1)]
    with pytest.raises(InvalidRequest, match=f"at most {limits.MAX_FILE_REFS} per service"):
        validate.validate_service_spec(spec_with(*many))
    with pytest.raises(InvalidRequest, match="user"):
        validate.validate_service_spec(spec_with(user="two words"))
    with pytest.raises(InvalidRequest, match="500 KiB"):
        validate.validate_file_data("secret", b"x" * (limits.MAX_FILE_DATA + 1))
    validate.validate_file_data("secret", b"x" * limits.MAX_FILE_DATA)


def test_the_cli_reads_short_and_long_flags_with_octal_modes() -> None:
    assert parse_file_ref("--secret", "db") == pb.FileReference(name="db")
    ref = parse_file_ref("--secret", "source=db,target=/etc/db,uid=1,gid=2,mode=0440")
    assert (ref.name, ref.target, ref.uid, ref.gid, ref.mode) == ("db", "/etc/db", "1", "2", 0o440)
    assert parse_file_ref("--config", "src=c,mode=400").mode == 0o400  # always octal
    for bad, message in (
        ("target=x", "name"),
        ("source=a,mode=9", "octal"),
        ("source=a,colour=red", "unknown"),
    ):
        with pytest.raises(CLIError, match=message):
            parse_file_ref("--secret", bad)
    refs = spec_with(
        pb.FileReference(name="old"), pb.FileReference(name="keep", target="k")
    ).task.container.secrets
    change_refs(refs, "--secret", ["old"], ["new", "source=other,target=k"])
    assert [(r.name, r.target) for r in refs] == [("new", ""), ("other", "k")]


def test_a_service_uses_what_its_spec_and_its_previous_spec_refer_to() -> None:
    service = pb.Service(spec=spec_with(pb.FileReference(id="id-new", name="new")))
    service.previous_spec.CopyFrom(spec_with(pb.FileReference(id="id-old", name="old")))
    service.spec.task.container.configs.add(id="id-conf", name="conf")
    assert used_by(service) == {"secret": {"old": "id-old", "new": "id-new"}, "config": {"conf": "id-conf"}}
    assert used_by(None) == {"secret": {}, "config": {}}
    holder = Holder.decode(Holder("sec-1", ["b", "a", "b"]).encode())
    assert (holder.id, holder.users) == ("sec-1", ["a", "b"])
