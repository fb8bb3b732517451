"""The local stack's quiet terminal: libraries' logs and warnings go to files, jobrelay's own
warnings and errors still reach the terminal."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from jobrelay_local.log_files import logs_to_files

THIRD_PARTY = "/venv/lib/python3.11/site-packages/moto/cloudformation/parsing.py"


def test_moto_and_emulator_logs_go_to_their_files(tmp_path: Path, capsys):
    # Given the local stack's log files
    with logs_to_files(tmp_path):
        # When moto, its server and an emulator log
        logging.getLogger("moto").warning("No Moto CloudFormation support for AWS::X")
        logging.getLogger("werkzeug").info("127.0.0.1 - - POST / 200")
        logging.getLogger("jobrelay_local.emulators").info("deepset emulator listening")
    # Then each line is in its file and none on the terminal
    moto_log = (tmp_path / "moto.log").read_text(encoding="utf-8")
    assert "No Moto CloudFormation support for AWS::X" in moto_log
    assert "POST / 200" in moto_log
    assert "listening" in (tmp_path / "emulators.log").read_text(encoding="utf-8")
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


def test_third_party_warnings_are_logged_and_ours_still_shown(tmp_path: Path):
    shown: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # Given a terminal that shows warnings, and the local stack's log files
        warnings.showwarning = lambda message, *_args, **_kwargs: shown.append(str(message))
        with logs_to_files(tmp_path):
            # When a library and jobrelay each raise a warning
            warnings.warn_explicit("Tried to parse AWS::X", UserWarning, THIRD_PARTY, 341)
            warnings.warn_explicit("a jobrelay warning", UserWarning, __file__, 1)
    # Then the library's is in moto.log, and jobrelay's is shown as before
    moto_log = (tmp_path / "moto.log").read_text(encoding="utf-8")
    assert "Tried to parse AWS::X" in moto_log
    assert "a jobrelay warning" not in moto_log
    assert shown == ["a jobrelay warning"]


def test_logging_is_as_before_once_the_stack_stops(tmp_path: Path):
    moto = logging.getLogger("moto")
    before = (moto.propagate, moto.level, list(moto.handlers), warnings.showwarning)
    with logs_to_files(tmp_path):
        assert not moto.propagate
    assert (moto.propagate, moto.level, list(moto.handlers), warnings.showwarning) == before
