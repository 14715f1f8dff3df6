"""The host and the runner speak one protocol: what the runner sends is held against the
host's own source (src/, read as text: its serde names), so a change on either side alone
fails here rather than in a container.

The host's items are found by their declarations anywhere under src/ (rust_source)."""

import glob
import os
import re

import pytest

import runner_process as rp
import rust_source as rust
from codebox_runner import constants, ending, packages
from codebox_runner.outputs import compact_flags
from codebox_runner.protocol import PROTOCOL_VERSION, Event, Status, Stream, line_mac

pytestmark = pytest.mark.skipif(
    not os.path.isdir(rust.SRC_DIR), reason="the host's source is not beside the runner"
)

PACKAGE_DIR = os.path.dirname(packages.__file__)
SESSION_REPORT = r"pub struct SessionReport\b"

# Keys the runner sends that the host does not read (serde ignores unknown fields).
NOT_READ_BY_HOST = {"result": {"stdout_chars", "stderr_chars"}}
# Job keys the runner accepts that the host never sends.
NOT_SENT_BY_HOST = {"env", "site_dirs"}
# Statuses the host gives a run it did not start, never the runner's.
HOST_ONLY_STATUSES = {"refused", "install_failed"}


def runner_source():
    text = ""
    for path in sorted(glob.glob(os.path.join(PACKAGE_DIR, "*.py"))):
        with open(path) as f:
            text += f.read()
    return text


def keys_read(variable):
    """The keys the runner's code reads from dicts it names `variable`."""
    source = runner_source()
    return set(re.findall(r'\b%s(?:\[|\.get\(|\.pop\()"(\w+)"' % variable, source))


def test_pictures_are_measured_up_to_the_side_the_host_sends_as_they_are():
    assert int(rust.const_value("FIGURE_SIDE")) == constants.MEASURED_MAX_SIDE


def test_the_protocol_version_is_the_hosts():
    assert int(rust.const_value("PROTOCOL_VERSION")) == PROTOCOL_VERSION


def test_the_events_are_the_hosts():
    assert {e.value for e in Event} == set(rust.enum_variants("RunnerEvent"))


def test_the_statuses_the_runner_reports_are_the_hosts():
    host = set(rust.enum_variants("Status"))
    runner = {s.value for s in Status}
    assert runner <= host
    assert host - runner == HOST_ONLY_STATUSES


def test_the_output_streams_are_the_hosts():
    assert {s.value for s in Stream} == set(rust.enum_variants("OutputStream"))


def test_a_mac_is_as_long_as_the_host_cuts_it():
    source, _ = rust.find(r"fn open_line\b")
    cut = {int(n) for n in re.findall(r"line\[\.\.(\d+)\]", source.text)}
    space = {int(n) for n in re.findall(r"line\[(\d+)\] != b' '", source.text)}
    mac = line_mac(b"key", b"{}")
    assert cut == space == {len(mac)} == {64}


def test_the_host_words_a_timeout_and_an_oom_as_the_runner_does():
    literals = rust.string_literals()
    assert ending.TIMEOUT_TEXT.replace("%g", "{}") in literals
    assert ending.OOM_TEXT.replace("%s", "{}") in literals
    assert {"TimeoutError", "MemoryError"} <= literals


def test_the_job_keys_the_runner_reads_are_the_hosts():
    host = set(rust.struct_fields("Job"))
    assert keys_read("job") - NOT_SENT_BY_HOST <= host
    # The ones it requires (subscripts) are always sent.
    required = set(re.findall(r'\bjob\["(\w+)"\]', runner_source()))
    assert required <= {name for name, f in rust.struct_fields("Job").items()}
    assert keys_read("session") <= set(rust.struct_fields("SessionJob"))
    assert keys_read("spec") == set(rust.struct_fields("LiveJob"))
    assert keys_read("entry") <= set(rust.struct_fields("JobFile"))


def test_the_runner_reads_the_hosts_answer_to_missing():
    assert keys_read("reply") == set(rust.struct_fields("SiteDirs"))


def test_the_runners_report_bounds_fit_the_hosts():
    assert constants.MAX_LISTED_NAMES <= int(rust.const_value("MAX_LISTED", near=SESSION_REPORT))
    assert constants.MAX_LISTED_NAME_CHARS <= int(
        rust.const_value("MAX_NAME_CHARS", near=SESSION_REPORT)
    )
    assert constants.MAX_LISTED_REASON_CHARS <= int(
        rust.const_value("MAX_REASON_CHARS", near=SESSION_REPORT)
    )


def test_a_flag_has_only_the_hosts_fields():
    flags = compact_flags([{"flag": "too_many_files", "name": str(i)} for i in range(30)])
    flags.append({"flag": "file_too_large", "name": "x", "size": 3})
    host = set(rust.struct_fields("Flag"))
    assert set().union(*(set(f) for f in flags)) <= host


def check_fields(kind, sent, host_fields, ignored=()):
    """Every field the host requires is sent, and everything sent is read by the host."""
    required = {name for name, f in host_fields.items() if not f.default}
    assert required <= sent, "%s lacks %s" % (kind, required - sent)
    assert sent - set(ignored) <= set(host_fields), "%s: the host reads no %s" % (
        kind, sent - set(ignored) - set(host_fields))


@pytest.fixture(scope="module")
def transcript():
    """One real run that sends every event the runner has."""
    if not (rp.namespace_prefix() and rp.runner_python()):
        pytest.skip("needs a PID namespace (unshare) and a Python the code's uid can use")
    scratch = rp.Scratch()
    try:
        output_dir = scratch.dir("outputs")
        code = (
            "import os\n"
            "print('live', flush=True)\n"
            "try:\n    import zz_codebox_contract\nexcept ImportError:\n    pass\n"
            "os.symlink('/etc/passwd', %r + '/link')\n"
            "kept = 1\n"
            "handle = open('/dev/null')\n"
            "raise ValueError('the end')\n" % output_dir
        )
        job = rp.job_for(
            code, scratch.dir("work"), output_dir,
            scan_imports=True,
            live={"max_event_chars": 100, "max_total_chars": 1000, "interval_ms": 50},
            session={"restore": None, "save_to": scratch.dir("state") + "/snapshot",
                     "max_bytes": 1 << 20},
        )
        yield rp.run(job, answer=lambda modules: {"site_dirs": [], "error": "none here"})
    finally:
        scratch.cleanup()


def test_the_run_sent_every_event(transcript):
    assert set(transcript.events()) | {"ready"} == {e.value for e in Event}
    assert transcript.ready == {"event": "ready", "protocol": PROTOCOL_VERSION}


def test_every_event_carries_the_hosts_fields(transcript):
    host = rust.enum_variants("RunnerEvent")
    messages = [transcript.ready] + [m for _, _, m in transcript.lines]
    for message in messages:
        event = message["event"]
        sent = set(message) - {"event"}
        fields = host[event]
        if fields is None and event == "result":
            fields = rust.struct_fields("RunnerResult")
        elif fields is None:
            fields = {}
        check_fields(event, sent, fields, NOT_READ_BY_HOST.get(event, ()))


def test_the_results_parts_carry_the_hosts_fields(transcript):
    result = transcript.result
    check_fields("error", set(result["error"]), rust.struct_fields("RunError"))
    session = result["session"]
    assert set(session) == set(rust.struct_fields("SessionReport"))
    dropped = rust.struct_fields("Dropped")
    for entry in session["not_kept"]:
        check_fields("not_kept", set(entry), dropped)
    assert session["not_kept"], "the run should have left a name out"
    flags = transcript.one("outputs")["flags"]
    assert flags
    for flag in flags:
        check_fields("flag", set(flag), rust.struct_fields("Flag"))
