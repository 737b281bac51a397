"""The subprocess helper and the masked build log."""

import io

import pytest

from goldsmith_provider.engine.errors import CommandError
from goldsmith_provider.engine.log import MASK, BuildLog, Masker
from goldsmith_provider.engine.proc import run


def test_failure_explains_status_and_shows_the_last_output_lines(tmp_path):
    log = BuildLog("t", tmp_path / "b.log", console=io.StringIO())
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", "for i in $(seq 1 100); do echo line$i; done; exit 3"], log=log)
    text = str(info.value)
    assert "exit status 3" in text and "line100" in text and "line61" in text and "line60\n" not in text


def test_missing_command_is_explained():
    with pytest.raises(CommandError) as info:
        run(["goldsmith-no-such-tool"])
    assert info.value.status == 127 and "not found" in str(info.value)


def test_signal_is_explained():
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", "kill -TERM $$"])
    assert "SIGTERM" in str(info.value)


def test_timeout_kills_and_says_so():
    with pytest.raises(CommandError) as info:
        run(["sleep", "30"], timeout=0.5)
    assert "timed out" in str(info.value)


def test_secrets_are_masked_in_console_file_and_errors(tmp_path):
    console = io.StringIO()
    log = BuildLog("img", tmp_path / "b.log", masker=Masker(["hunter2-secret"]), console=console)
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", "echo token=hunter2-secret; exit 1", "hunter2-secret"], log=log)
    log.info("the value is hunter2-secret")
    log.close()
    for text in (console.getvalue(), (tmp_path / "b.log").read_text(), str(info.value)):
        assert "hunter2-secret" not in text
    assert MASK in (tmp_path / "b.log").read_text()
    assert console.getvalue().startswith("[img] ")


def test_multiline_secret_masked_line_by_line():
    m = Masker(["-----BEGIN KEY-----\nabcdefghijkl\n-----END KEY-----"])
    assert "abcdefghijkl" not in m.mask("printed: abcdefghijkl")
