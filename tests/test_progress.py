"""Progress bars: on by default when stderr is a terminal, ``--progress``/``--no-progress``."""

import io
import subprocess
import sys

import pytest

from sim.cli.main import _parser
from sim.cli.progress import progress_wanted

CAMPAIGN = ["campaign", "--rows", "8", "--cols", "8", "--k-max", "256", "--m", "8", "--k", "64",
            "--n", "8", "--seed", "2", "--db", "c.db"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("command", [CAMPAIGN, ["sim"]])
@pytest.mark.parametrize("options, on_a_terminal, elsewhere", [
    ([], True, False),
    (["--json"], False, False),
    (["--progress"], True, True),
    (["--progress", "--json"], True, True),
    (["--no-progress"], False, False),
])
def test_progress_option(command, options, on_a_terminal, elsewhere):
    args = _parser().parse_args([*command, *options])
    assert progress_wanted(args, Terminal()) is on_a_terminal
    assert progress_wanted(args, io.StringIO()) is elsewhere


def run_campaign_command(tmp_path, *options):
    return subprocess.run([sys.executable, "-m", "sim.cli.main", *CAMPAIGN[:-1],
                           str(tmp_path / "c.db"), "--injections", "100", *options],
                          capture_output=True, text=True, check=True)


def test_no_bar_unless_stderr_is_a_terminal_or_asked_for(tmp_path):
    assert "injections:" not in run_campaign_command(tmp_path).stderr
    forced = run_campaign_command(tmp_path, "--injections", "150", "--progress").stderr
    assert "injections: 100%" in forced and "150/150" in forced
