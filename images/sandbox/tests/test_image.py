"""The runner reaches the image whole: every module of the package is in the build
context the host embeds (src/sandbox/image.rs CONTEXT_FILES) and copied by the Dockerfile
to /opt/codebox/codebox_runner/, beside the entry point the container starts."""

import glob
import os
import re

import pytest

import rust_source as rust

PACKAGE_DIR = os.path.join(rust.SANDBOX_DIR, "codebox_runner")

pytestmark = pytest.mark.skipif(
    not os.path.isdir(rust.SRC_DIR), reason="the host's source is not beside the runner"
)


def context_files():
    source, m = rust.find(r"pub const CONTEXT_FILES\b")
    start = source.text.index("[", source.text.index("=", m.start()))
    end = source.text.index("];", start)
    return dict(
        re.findall(r'\(\s*"([^"]+)"\s*,\s*include_bytes!\(\s*"([^"]+)"\s*\)\s*,?\s*\)',
                   source.text[start:end])
    ), source.path


def test_every_module_is_in_the_build_context_under_its_path():
    files, image_rs = context_files()
    for path in sorted(glob.glob(os.path.join(PACKAGE_DIR, "*.py"))):
        name = "codebox_runner/" + os.path.basename(path)
        assert name in files, "%s is not in CONTEXT_FILES" % name
        included = os.path.normpath(os.path.join(os.path.dirname(image_rs), files[name]))
        assert included == path
    listed = {n for n in files if n.startswith("codebox_runner/")}
    on_disk = {"codebox_runner/" + os.path.basename(p)
               for p in glob.glob(os.path.join(PACKAGE_DIR, "*.py"))}
    assert listed == on_disk
    assert files["runner.py"].endswith("images/sandbox/runner.py")


def test_the_dockerfile_copies_the_package_beside_the_entry_point():
    files, image_rs = context_files()
    dockerfile = os.path.normpath(os.path.join(os.path.dirname(image_rs), files["Dockerfile"]))
    with open(dockerfile) as f:
        text = f.read()
    assert re.search(r"^COPY codebox_runner/ /opt/codebox/codebox_runner/$", text, re.M)
    assert 'CMD ["python3", "-u", "/opt/codebox/runner.py"]' in text
    assert rust.const_value("RUNNER_PATH") == '"/opt/codebox/runner.py"'
