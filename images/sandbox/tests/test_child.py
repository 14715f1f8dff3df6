"""The code's process's pure parts: the cell, exceptions, exits, hints, names."""

import io
import os

import pytest

from codebox_runner import privileges
from codebox_runner.child import (
    compile_cell,
    ends_with_semicolon,
    exception_name,
    exception_report,
    hint_missing_file,
    rehearse,
    system_exit_code,
)
from codebox_runner.user_files import plain_name


def run_cell(source):
    body, last = compile_cell(source, "<code>")
    scope = {}
    exec(body, scope)
    return scope, (eval(last, scope) if last is not None else None), last


def test_the_last_expression_is_evaluated_apart():
    scope, value, last = run_cell("x = 2\nx * 21")
    assert value == 42 and last is not None


@pytest.mark.parametrize(
    "source",
    ["x = 1", "x = 1\nx;", "x = 1\nx;  # hidden", "", "# only a comment\n", "def f():\n    return 1"],
)
def test_no_value_is_shown_without_a_last_expression_or_after_a_semicolon(source):
    _, _, last = run_cell(source)
    assert last is None


def test_the_body_runs_once_without_the_last_expression():
    scope, value, _ = run_cell("calls = []\ncalls.append(1)\ncalls.append(2) or len(calls)")
    assert scope["calls"] == [1, 2] and value == 2


def test_a_syntax_error_is_raised_with_the_cells_name():
    with pytest.raises(SyntaxError) as raised:
        compile_cell("def f(:\n  pass", "<code>")
    assert raised.value.filename == "<code>"


@pytest.mark.parametrize(
    "source, ends",
    [
        ("x;", True),
        ("x; # note\n\n", True),
        ("x", False),
        ("'a;'", False),
        ("x  # ;", False),
        ("for i in range(3):\n    i;", True),
        ("(1,\n", False),  # tokenize error: no semicolon rule
        ("", False),
    ],
)
def test_ends_with_semicolon_is_ipythons_rule(source, ends):
    assert ends_with_semicolon(source) is ends


def test_exception_names_carry_their_module_unless_builtin_or_the_codes():
    import json

    assert exception_name(ValueError) == "ValueError"
    assert exception_name(json.JSONDecodeError) == "json.decoder.JSONDecodeError"
    local = type("Mine", (Exception,), {"__module__": "__main__"})
    assert exception_name(local) == "Mine"
    nested = type("Inner", (Exception,), {"__module__": "pkg.mod", "__qualname__": "Outer.Inner"})
    assert exception_name(nested) == "pkg.mod.Outer.Inner"


@pytest.mark.parametrize(
    "qualname, module",
    [("X\n# Heading", "__main__"), ("[click](https://evil.example)", "__main__"),
     ("A" * 201, "__main__"), ("Fine", "bad module"), ("a..b", "__main__")],
)
def test_an_exception_name_that_is_no_dotted_identifier_is_reported_as_exception(qualname, module):
    crafted = type("E", (Exception,), {"__module__": module})
    crafted.__qualname__ = qualname
    assert exception_name(crafted) == "Exception"


def test_the_report_bounds_the_message():
    report = exception_report(ValueError("m" * 5000))
    assert report == {"type": "ValueError", "message": "m" * 2000}


def test_system_exit_codes_are_pythons(capsys):
    assert system_exit_code(None) == 0
    assert system_exit_code(3) == 3
    assert system_exit_code(256 + 7) == 7
    assert system_exit_code(-1) == 255
    assert system_exit_code("bye") == 1
    assert capsys.readouterr().err == "bye\n"


FILES = [{"file_id": "file-abc", "filename": "Sales 2024.csv", "file_type": "csv",
          "data_name": "Sales 2024.csv", "path": "/mnt/inputs/file-abc"}]


@pytest.mark.parametrize(
    "missing",
    ["Sales 2024.csv", "/mnt/user-data/Sales 2024.csv", "file-abc", "./file-abc.csv"],
)
def test_a_missing_file_that_is_the_users_says_where_it_is(missing):
    out = io.StringIO()
    hint_missing_file(FileNotFoundError(2, "No such file", missing), FILES, out=out)
    assert out.getvalue() == (
        "codebox: the user's file %r is at /mnt/data/Sales 2024.csv; "
        "load_file('file-abc') reads it too\n" % os.path.basename(missing)
    )


def test_a_path_only_in_the_message_is_found_too():
    out = io.StringIO()
    hint_missing_file(FileNotFoundError("[Errno 2] No such file: 'Sales 2024.csv'"), FILES, out=out)
    assert "is at /mnt/data/Sales 2024.csv" in out.getvalue()


@pytest.mark.parametrize(
    "exc, files",
    [
        (FileNotFoundError(2, "No such file", "other.csv"), FILES),
        (KeyError("Sales 2024.csv"), FILES),
        (FileNotFoundError(2, "No such file", "x.csv"),
         [dict(FILES[0], filename="x.csv", data_name="../x.csv")]),
        (FileNotFoundError(2, "No such file", "Sales 2024.csv"), ["not a dict"]),
    ],
)
def test_no_hint_for_other_errors_or_names_or_unsafe_data_names(exc, files):
    out = io.StringIO()
    hint_missing_file(exc, files, out=out)
    assert out.getvalue() == ""


@pytest.mark.parametrize("name", ["a.csv", "ü" * 127, "x" * 255, ".hidden", "a b"])
def test_plain_names(name):
    assert plain_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\0b", "x" * 256, "ü" * 128, None, 3])
def test_not_plain_names(name):
    assert not plain_name(name)


@pytest.mark.parametrize(
    "value, uid",
    [("", 10001), ("20000", 20000), ("10000", 10001), ("0", 10001), ("abc", 10001),
     (str(2**31 - 1), 10001), (str(2**31 - 2), 2**31 - 2)],
)
def test_the_code_uid_is_the_hosts_within_bounds_and_leaves_the_environment(value, uid):
    environ = {"CODEBOX_CODE_UID": value, "OTHER": "x"}
    assert privileges.code_uid(environ) == uid
    assert environ == {"OTHER": "x"}


def test_the_code_uid_defaults_without_the_variable():
    assert privileges.code_uid({}) == privileges.DEFAULT_CODE_UID == 10001


def test_the_rehearsal_before_the_job_prints_nothing_and_changes_no_state(capfd):
    import random

    random.seed(7)
    state = random.getstate()
    cwd = os.getcwd()
    rehearse()
    assert random.getstate() == state and os.getcwd() == cwd
    assert capfd.readouterr() == ("", "")
