"""--format as the docker CLI takes it: Go templates, tables, json."""

from __future__ import annotations

import json

import pytest

from shoal.cli.listing import Listing, check_format, emit, tabulate
from shoal.cli.templates import TemplateError, parse

ROW = {"ID": "abcdef123456", "Name": "web", "Replicas": "3/3", "Labels": {"zone": "a", "disk": "ssd"}}
LISTING = Listing(
    {"ID": "ID", "Name": "NAME", "Replicas": "REPLICAS", "DesiredState": "DESIRED STATE", "Labels": "LABELS"},
    "table {{.ID}}\t{{.Name}}",
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.Name}}", "web"),
        ("{{.Name}} {{.Replicas}}", "web 3/3"),
        ("{{ .Name }}", "web"),
        ("name={{.Name}};", "name=web;"),
        ("{{upper .Name}}", "WEB"),
        ("{{.Name | upper}}", "WEB"),
        ("{{lower (upper .Name)}}", "web"),
        ('{{title "hello wide-world"}}', "Hello Wide-World"),
        ("{{truncate .ID 6}}", "abcdef"),
        ("{{truncate .Name 6}}", "web"),
        ('{{join (split "a,b,c" ",") "+"}}', "a+b+c"),
        ("[{{pad .Name 1 2}}]", "[ web  ]"),
        ("{{.Labels.zone}}", "a"),
        ("{{.Labels}}", "map[disk:ssd zone:a]"),
        ("{{.Labels.missing}}", "<no value>"),
        ("a {{- .Name -}} b", "awebb"),
        ("{{/* a comment */}}{{.Name}}", "web"),
    ],
)
def test_templates_render_as_go_renders_them(template: str, expected: str) -> None:
    assert parse(template, ROW).render(ROW) == expected


def test_json_of_the_row_is_compact_with_sorted_keys_as_gos_encoder_writes_it() -> None:
    out = parse("{{json .}}", ROW).render(ROW)
    assert out == '{"ID":"abcdef123456","Labels":{"disk":"ssd","zone":"a"},"Name":"web","Replicas":"3/3"}'
    assert parse("{{json .Name}}", ROW).render(ROW) == '"web"'


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{{.Nope}}", 'no field "Nope"'),
        ("{{if .Name}}x{{end}}", '"if" is not supported'),
        ("{{range .Labels}}x{{end}}", '"range" is not supported'),
        ("{{frobnicate .Name}}", 'function "frobnicate" not defined'),
        ("{{.Name", "unclosed action"),
        ("{{truncate .Name}}", "truncate: takes 2 arguments, got 1"),
        ("{{.Name .ID}}", "only a function can take arguments"),
        ("{{.Name | .ID}}", "only a function can follow |"),
        ("{{}}", "missing value"),
    ],
)
def test_bad_templates_are_refused_when_parsed_naming_the_problem(template: str, says: str) -> None:
    with pytest.raises(TemplateError, match=says.replace("|", r"\|").replace("(", r"\(")):
        parse(template, ROW)


def test_a_table_header_names_each_column_and_functions_leave_it_as_it_is() -> None:
    template = parse("{{.ID}}\t{{upper .Name}}\t{{truncate .DesiredState 3}}", LISTING.headers)
    assert template.header(LISTING.headers) == "ID\tNAME\tDESIRED STATE"


def test_tables_align_like_gos_tabwriter_at_least_ten_wide_three_apart() -> None:
    text = "ID\tNAME\tMODE\nabcdefghijkl\tweb\treplicated\nx\ty\tz"
    assert tabulate(text).splitlines() == [
        "ID             NAME      MODE",
        "abcdefghijkl   web       replicated",
        "x              y         z",
    ]


def test_check_format_turns_typed_backslash_t_into_tabs_and_knows_table_and_json() -> None:
    assert check_format(LISTING, "json").kind == "json"
    default = check_format(LISTING, "table")
    assert default.is_table and default.template is not None
    assert default.template.fields() == {"ID", "Name"}
    custom = check_format(LISTING, r"table {{.Name}}\t{{.Replicas}}")
    assert custom.is_table and custom.template is not None
    assert custom.template.render(ROW) == "web\t3/3"
    assert check_format(LISTING, "{{.Name}}").kind == "template"


def test_emit_prints_a_table_with_headers_or_one_line_per_row(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [ROW, {**ROW, "Name": "api", "Replicas": "0/1"}]
    emit(LISTING, check_format(LISTING, r"table {{.Name}}\t{{.Replicas}}"), rows, list)
    assert capsys.readouterr().out.splitlines() == ["NAME      REPLICAS", "web       3/3", "api       0/1"]
    emit(LISTING, check_format(LISTING, "{{.Name}}"), rows, list)
    assert capsys.readouterr().out == "web\napi\n"
    emit(LISTING, check_format(LISTING, "json"), rows, lambda: [{"name": "web"}])
    assert json.loads(capsys.readouterr().out) == [{"name": "web"}]
