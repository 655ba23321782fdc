"""Reading Compose YAML safely (shoal.stack.yamlsafe): bounds checked while
reading, so bombs fail fast with little memory; locations kept."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from shoal.stack.located import LList, LMap, StackError, plain
from shoal.stack.yamlsafe import MAX_DEPTH, MAX_FILE_BYTES, load_file, parse


def billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        text += f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n"
    return text


def test_billion_laughs_is_refused_with_little_memory() -> None:
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(StackError, match="YAML bomb") as caught:
        parse(billion_laughs(), "bomb.yml")
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert str(caught.value).startswith("bomb.yml:")
    # The expansion would be 10^9 nodes; refused after reading ten lines.
    assert peak < 5 * 1024 * 1024, f"peak {peak} bytes"
    print(f"billion laughs refused in {elapsed * 1000:.1f} ms, peak {peak / 1024:.0f} KiB")


def test_a_merge_key_bomb_is_refused_too() -> None:
    text = "a: &a {x: 1, y: 2, z: 3, w: 4, v: 5, u: 6, t: 7, s: 8, r: 9, q: 10}\n"
    for i in range(1, 6):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        keys = ", ".join(f"k{j}: *{prev}" for j in range(10))
        text += f"{name}: &{name} {{{keys}}}\n"
    with pytest.raises(StackError, match="expand to more than"):
        parse(text, "merge.yml")


def test_nesting_is_bounded_and_recursive_aliases_refused() -> None:
    # The top-level mapping is the first level.
    ok = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert parse(ok, "ok.yml") is not None
    with pytest.raises(StackError, match=f"nested more than {MAX_DEPTH}"):
        parse("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH, "deep.yml")
    with pytest.raises(StackError, match=r"deep\.yml:1"):
        parse("a: " + "[" * 5000 + "]" * 5000, "deep.yml")
    with pytest.raises(StackError, match=r"rec.yml:3: recursive alias \*x"):
        parse("a: &x\n  b:\n    - *x\n", "rec.yml")


def test_a_file_over_the_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.yml"
    big.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    with pytest.raises(StackError, match=f"at most {MAX_FILE_BYTES}"):
        load_file(str(big))
    with pytest.raises(StackError, match="No such file"):
        load_file(str(tmp_path / "missing.yml"))


def test_anchors_aliases_and_merge_keys_work_and_keys_keep_their_lines() -> None:
    doc = parse(
        "x-base: &base\n"  # 1
        "  image: app:1\n"  # 2
        "  environment: {A: '1'}\n"  # 3
        "services:\n"  # 4
        "  web:\n"  # 5
        "    <<: *base\n"  # 6
        "    image: app:2\n"  # 7
        "    ports:\n"  # 8
        "      - 80:80\n",  # 9
        "f.yml",
    )
    web = doc["services"]["web"]
    assert isinstance(web, LMap) and isinstance(web["ports"], LList)
    assert plain(web) == {"image": "app:2", "environment": {"A": "1"}, "ports": ["80:80"]}
    assert (web.at("image").line, web.at("environment").line, web["ports"].at(0).line) == (7, 3, 9)
    assert str(web.at("image")) == "f.yml:7"


def test_yaml_errors_name_the_line_and_unsafe_tags_and_repeated_keys_are_refused() -> None:
    with pytest.raises(StackError, match=r"bad.yml:4: invalid YAML: .*\(from line 1\)"):
        parse("a: 1\nb:\n  - x\n - y\n", "bad.yml")
    with pytest.raises(StackError, match="could not determine a constructor"):
        parse("a: !!python/object/apply:os.system [id]\n", "tag.yml")
    with pytest.raises(StackError, match=r'dup\.yml:3: key "a" appears twice'):
        parse("a: 1\nb: 2\na: 3\n", "dup.yml")
    with pytest.raises(StackError, match=r"u\.yml:2: not valid Unicode text"):
        parse('a: 1\nb: "\\ud800"\n', "u.yml")
    assert parse('a: "\\ud83d\\ude00"\n', "pair.yml") == {"a": "\U0001f600"}  # a pair, as JSON escapes it


def test_numbers_are_never_read_in_base_60_and_modes_are_octal() -> None:
    assert plain(parse("p: [22:22, 5000:80, 1:30]\nmode: 0440\nn: 10\nf: 1.5\n", "n.yml")) == {
        "p": ["22:22", "5000:80", "1:30"],
        "mode": 0o440,
        "n": 10,
        "f": 1.5,
    }
