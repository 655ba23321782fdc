"""Variables in Compose files (shoal.stack.interpolate) and .env files
(shoal.stack.dotenv), as Compose substitutes and reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.stack.dotenv import dotenv_beside, parse_env
from shoal.stack.interpolate import interpolate, substitute
from shoal.stack.located import StackError, plain
from shoal.stack.yamlsafe import parse

ENV = {"SET": "value", "EMPTY": ""}


def sub(text: str, env: dict[str, str] = ENV) -> tuple[str, list[str]]:
    warnings: list[str] = []
    return substitute(text, env, "services.web.image", None, warnings.append), warnings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$SET", "value"),
        ("${SET}", "value"),
        ("pre-${SET}-post", "pre-value-post"),
        ("$$SET", "$SET"),
        ("cost $$5", "cost $5"),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${UNSET-default}", "default"),
        ("${SET:-default}", "value"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${SET?never}", "value"),
        ("${EMPTY?only when unset}", ""),
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-a ${SET} b}", "a value b"),
        ("no dollars", "no dollars"),
    ],
)
def test_each_form_substitutes_as_compose_does(text: str, expected: str) -> None:
    assert sub(text)[0] == expected


def test_an_unset_variable_is_empty_with_a_warning_only_where_it_is_used() -> None:
    value, warnings = sub("[$UNSET]")
    assert value == "[]" and warnings == [
        "services.web.image: variable UNSET is not set; using an empty string"
    ]
    assert sub("${SET:-${ALSO_UNSET}}")[1] == []  # the default is not used


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:?set it please}", "required variable UNSET is missing a value: set it please"),
        ("${EMPTY:?empty is not enough}", "required variable EMPTY is missing a value: empty is not enough"),
        ("${UNSET?}", "required variable UNSET is missing a value"),
        ("$", 'a "$" must start a variable'),
        ("a $-b", 'a "$" must start a variable'),
        ("${SET", 'is not closed with "}"'),
        ("${SET:-x", 'is not closed with "}"'),
        ("${1A}", "expected a variable name"),
        ("${SET!x}", 'unexpected "!"'),
    ],
)
def test_errors_name_the_value_and_say_what_to_do(text: str, message: str) -> None:
    with pytest.raises(StackError, match=r"services\.web\.image") as caught:
        sub(text)
    assert message in str(caught.value)


def test_a_whole_file_is_interpolated_keeping_keys_and_locations() -> None:
    doc = parse("services:\n  web:\n    image: ${IMG}\n    labels: {$$key: $SET}\n", "f.yml")
    out = interpolate(doc, {"IMG": "app:1", "SET": "v"}, "root", lambda _: None)
    assert plain(out) == {"services": {"web": {"image": "app:1", "labels": {"$$key": "v"}}}}
    assert out["services"]["web"].at("image").line == 3
    with pytest.raises(StackError, match=r"f.yml:3: root.services.web.image: required variable IMG"):
        interpolate(parse("services:\n  web:\n    image: ${IMG:?}\n", "f.yml"), {}, "root", lambda _: None)


def test_dotenv_files_are_read_with_quotes_comments_and_export(tmp_path: Path) -> None:
    text = (
        "# a comment\n\n"
        "PLAIN=value # trailing comment\n"
        "export EXPORTED=yes\n"
        "SINGLE='keep $ and \\n as they are'\n"
        'DOUBLE="line\\nbreak and \\"quotes\\""\n'
        "EMPTY=\n"
    )
    assert parse_env(text, ".env") == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SINGLE": "keep $ and \\n as they are",
        "DOUBLE": 'line\nbreak and "quotes"',
        "EMPTY": "",
    }
    with pytest.raises(StackError, match=r"\.env:2: expected KEY=VALUE"):
        parse_env("OK=1\nnot a line\n", ".env")
    assert parse_env("BARE\n", "vars.env", allow_bare=True) == {"BARE": None}
    (tmp_path / "stack.yml").write_text("services: {}\n")
    assert dotenv_beside(str(tmp_path / "stack.yml")) == {}
    (tmp_path / ".env").write_text("A=1\n")
    assert dotenv_beside(str(tmp_path / "stack.yml")) == {"A": "1"}
